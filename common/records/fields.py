"""The names of the hash fields that code reads or writes one by one (whole records travel as
`Build` / `Deployment` through `to_redis` and `from_redis`, whose attribute names are these)."""

# A build's hash (keys.build)
ID = "id"
NUMBER = "number"
STATUS = "status"
DEPLOYMENT_ID = "deployment_id"
STARTED_AT = "started_at"
FINISHED_AT = "finished_at"
ERROR = "error"
ATTEMPT = "attempt"
WORKER = "worker"
LEASE_EXPIRES_MS = "lease_expires_ms"
LOG_STATE = "log_state"
CANCEL_REQUESTED_BY = "cancel_requested_by"

# A deployment's hash (keys.deployment)
TENANT = "tenant"
LATEST_BUILD_ID = "latest_build_id"
UPDATED_AT = "updated_at"
WEBHOOK_SECRET = "webhook_secret"
ARCHIVE_SHA256 = "archive_sha256"
ARCHIVE_SIZE = "archive_size"
ARCHIVE_HAS_DOCKERFILE = "archive_has_dockerfile"
ARCHIVE_UPLOADED_AT = "archive_uploaded_at"

# An API token's hash (keys.token)
TOKEN_HASH = "hash"
TOKEN_TENANT = "tenant"
TOKEN_NAME = "name"
TOKEN_CREATED_AT = "created_at"
