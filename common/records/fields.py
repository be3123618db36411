"""The names of the hash fields, as the constants code uses to read or write a field one by one
(`fields.STATUS == "status"`). A build's and a deployment's are their records' attribute names
(common/models.py), derived from them here so that a name has one home."""

from common.models import Build, Deployment

globals().update({name.upper(): name for name in (*Build.__struct_fields__, *Deployment.__struct_fields__)})

# An API token's hash (keys.token)
TOKEN_HASH = "hash"
TOKEN_TENANT = "tenant"
TOKEN_NAME = "name"
TOKEN_CREATED_AT = "created_at"
