"""Object storage (MinIO / S3): the client, the buckets, and the object names."""

from __future__ import annotations

import os

import certifi
import urllib3
from minio import Minio
from minio.error import ServerError
from urllib3.util import Retry, Timeout

from common.config import Config

# What a client meets when S3 does not answer (after the client's own retries); an S3 error
# response (no such key, access denied…) is an answer, and not one of these.
UNANSWERED = (urllib3.exceptions.HTTPError, ServerError)


# A client whose caller tries again itself within a bound of its own (the worker: its source
# fetch, its log archive) tries once more at once (a kept connection S3 closed), not minio's five
# times with waits (about 6 s against a dead S3, stacked on the bound), and gives up connecting
# after a few seconds, not minio's 5 min.
RETRIED_BY_CALLER = Retry(total=1, backoff_factor=0)
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60


def create_s3(config: Config, retried_by_caller: bool = False) -> Minio:
    http_client = None
    if retried_by_caller:  # as minio's own client, but for its retries and timeouts
        http_client = urllib3.PoolManager(
            timeout=Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=RETRIED_BY_CALLER,
        )
    # An explicit region skips the bucket-location probe, whose answer some S3 servers
    # (rclone) send in a form the client cannot parse.
    return Minio(
        config.s3_endpoint,
        access_key=config.s3_access_key,
        secret_key=config.s3_secret_key,
        secure=config.s3_secure,
        region=config.s3_region,
        http_client=http_client,
    )


def unanswered(error: Exception) -> str | None:
    """Why S3 did not answer, in the innermost error's words; None if `error` is not that."""
    if not isinstance(error, UNANSWERED):
        return None
    said = str(getattr(error, "reason", None) or error)
    return said.rpartition("): ")[2] or said


def ensure_buckets(s3: Minio, config: Config) -> None:
    for bucket in (config.logs_bucket, config.sources_bucket):
        if not s3.bucket_exists(bucket):
            s3.make_bucket(bucket)


def archive_key(deployment_id: str, sha256: str) -> str:
    """An uploaded source archive, content-addressed within its deployment."""
    return f"{deployment_id}/{sha256}.tar.gz"


def dockerfile_key(deployment_id: str, sha256: str) -> str:
    """The inline Dockerfile uploaded with the archive of that SHA-256."""
    return f"{deployment_id}/{sha256}.Dockerfile"


def log_key(deployment_id: str, build_id: str) -> str:
    """A build's archived log: plain UTF-8 text."""
    return f"{deployment_id}/{build_id}.log"


def record_key(deployment_id: str, build_id: str) -> str:
    """The public build record of an archived log, as JSON beside it; written after the log,
    so a record found means its log is whole."""
    return f"{deployment_id}/{build_id}.json"
