"""The worker's S3 client (common/s3.py, retried_by_caller) leaves the retrying to the farm's own
bounds: against an S3 that does not answer it fails at once, in the words minio's own client
gives after its retries (about 6 s), so a build's source fetch waits no longer than its bound."""

from __future__ import annotations

import time

import pytest

from common.config import Config
from common.s3 import create_s3, unanswered
from tests.conftest import free_port


def test_the_workers_s3_client_fails_at_once_against_an_s3_that_does_not_answer(config):
    dead = Config(**{**config.__dict__, "s3_endpoint": f"127.0.0.1:{free_port()}"})
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        create_s3(dead, retried_by_caller=True).get_object(config.sources_bucket, "any/key.tar.gz")
    took_s = time.monotonic() - started
    assert unanswered(raised.value) == "Failed to establish a new connection: [Errno 111] Connection refused"
    assert took_s < 1, took_s
