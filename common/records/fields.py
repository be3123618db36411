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
# "1": an admin token, which also sees the farm's running builds (GET /farm)
TOKEN_ADMIN = "admin"

# A worker process's record (keys.worker)
WORKER_HOST = "host"
WORKER_PID = "pid"
WORKER_THREADS = "threads"
WORKER_BUILDER = "builder"
WORKER_ENGINE_VERSION = "engine_version"
WORKER_STARTED_AT = "started_at"
WORKER_HEARTBEAT_MS = "heartbeat_ms"
WORKER_HEARTBEAT_INTERVAL_MS = "heartbeat_interval_ms"
# The ids of the builds the process runs, comma-separated.
WORKER_BUILDS = "builds"
