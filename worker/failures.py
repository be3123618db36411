"""Whose a failed build's fault is (contract.Build.error_kind), and the words that say it: a
user's mistake keeps the message their build gave; a fault of the farm names the part that
failed and what became of the build, never an exception's repr."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
import requests
import urllib3
from docker.errors import DockerException
from minio.error import MinioException, S3Error

from common.config import ConfigError
from common.models import ErrorKind
from worker.build_types import DockerError, EngineGone, InfrastructureFault
from worker.image_policy import ImageRefused
from worker.source import SourceError

# What the user's build itself reported: its Dockerfile, a step, its source, an image refused.
_USERS = (SourceError, ImageRefused, DockerError)
# The engine's answers to docker-py (the classic builder, the push).
_ENGINE = (DockerException, requests.RequestException)
_PUSH_FAILED = "Push failed: "


def classify(error: Exception) -> tuple[ErrorKind, str]:
    """The kind of a build's failure and its `error` text."""
    if isinstance(error, InfrastructureFault):
        return ErrorKind.INFRASTRUCTURE, str(error)
    if isinstance(error, _USERS):
        return ErrorKind.USER, str(error)
    return ErrorKind.INFRASTRUCTURE, _part_that_failed(error)


def _part_that_failed(error: Exception) -> str:
    if isinstance(error, ConfigError):
        return f"The worker is not set up for this build: {error}"
    if isinstance(error, S3Error):
        if error.code in ("NoSuchKey", "NoSuchBucket"):
            return "S3 no longer holds the build's stored source: nothing was built"
        return f"S3 refused to give the build's source ({error.code}): nothing was built"
    if isinstance(error, MinioException):  # an answer the client could not read (rclone's 404s)
        return "S3 did not give the build's stored source: nothing was built"
    if isinstance(error, urllib3.exceptions.HTTPError):  # the S3 client's transport
        return "S3 did not answer: the build's source was not fetched, nothing was built"
    if isinstance(error, redis.RedisError):
        return "Redis did not answer: the build could not go on"
    if isinstance(error, _ENGINE):
        return "The Docker engine did not answer: the build could not go on"
    return "An internal error in the worker ended the build (the worker's log has the details)"


@contextlib.contextmanager
def pushing() -> Iterator[None]:
    """Around the push of a built image: whatever fails it is the farm's (the registry or the
    engine), and the image was built."""
    try:
        yield
    except DockerError as e:
        said = str(e).removeprefix(_PUSH_FAILED)
        raise InfrastructureFault(
            f"The registry did not take the image: it was built but not pushed ({said})"
        ) from e
    except _ENGINE as e:  # docker-py's transport: the engine did not answer
        raise EngineGone(
            "The Docker engine did not answer during the push: the image was built but not pushed"
        ) from e
