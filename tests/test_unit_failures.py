"""Whose a build's failure is (worker/failures.py): the user's mistakes keep their own words;
the farm's faults name the part that failed and what became of the build, never a repr. The
exceptions are the ones the real clients raise; the engine-down case runs the real docker CLI
against an engine socket nobody serves."""

from __future__ import annotations

import dataclasses

import pytest
import redis
import requests
import urllib3
from docker.errors import APIError
from minio.error import InvalidResponseError, S3Error

from common.config import ConfigError
from common.models import ErrorKind
from worker.build_types import BuildSpec, DockerError, EngineGone, InfrastructureFault
from worker.buildkit import BuildKitRun
from worker.engine_watch import EngineMark
from worker.failures import classify, pushing
from worker.image_policy import ImageRefused
from worker.source import SourceError

INFRA, USER = ErrorKind.INFRASTRUCTURE, ErrorKind.USER


def s3_error(code: str) -> S3Error:
    return S3Error(urllib3.HTTPResponse(status=404), code, "gone", "/b/k", "req", "host")


@pytest.mark.parametrize(
    "error, expected",
    [
        (SourceError("Dockerfile not found: no file 'Dockerfile' in the build context"), USER),
        (DockerError('process "/bin/sh -c exit 3" did not complete successfully: exit code: 3'), USER),
        (ImageRefused("The Dockerfile names an image the farm cannot check: x"), USER),
        (InfrastructureFault("The Docker engine did not answer: the build did not run"), INFRA),
    ],
)
def test_a_failure_the_build_itself_reported_keeps_its_words_and_its_kind(error, expected):
    assert classify(error) == (expected, str(error))


@pytest.mark.parametrize(
    "error, text",
    [
        (s3_error("NoSuchKey"), "S3 no longer holds the build's stored source: nothing was built"),
        (s3_error("AccessDenied"), "S3 refused to give the build's source (AccessDenied): nothing was built"),
        (
            InvalidResponseError(404, "text/xml", "<Error><Code>NoSuchKey</Code></Error>"),
            "S3 did not give the build's stored source: nothing was built",
        ),
        (
            urllib3.exceptions.MaxRetryError(None, "/build-sources/x", "Connection refused"),
            "S3 did not answer: the build's source was not fetched, nothing was built",
        ),
        (redis.ConnectionError("Error 111 connecting"), "Redis did not answer: the build could not go on"),
        (
            requests.ConnectionError("('Connection aborted.', FileNotFoundError(2))"),
            "The Docker engine did not answer: the build could not go on",
        ),
        (APIError("500 Server Error"), "The Docker engine did not answer: the build could not go on"),
        (
            ConfigError("BUILDFARM_SECRETS_KEY is not set on the worker"),
            "The worker is not set up for this build: BUILDFARM_SECRETS_KEY is not set on the worker",
        ),
        (
            KeyError("surprise"),
            "An internal error in the worker ended the build (the worker's log has the details)",
        ),
    ],
)
def test_a_fault_of_the_farm_names_the_part_in_words_never_the_exception(error, text):
    assert classify(error) == (INFRA, text)
    assert type(error).__name__ not in text


def test_a_push_that_fails_is_the_farms_fault_and_the_image_was_built():
    with pytest.raises(InfrastructureFault) as refused, pushing():
        raise DockerError('Push failed: Get "http://localhost:5000/v2/": connect: connection refused')
    assert classify(refused.value) == (
        INFRA,
        "The registry did not take the image: it was built but not pushed "
        '(Get "http://localhost:5000/v2/": connect: connection refused)',
    )
    with pytest.raises(InfrastructureFault) as engine_gone, pushing():
        raise requests.ConnectionError("('Connection aborted.', FileNotFoundError(2))")
    assert str(engine_gone.value) == (
        "The Docker engine did not answer during the push: the image was built but not pushed"
    )


def test_a_buildkit_build_whose_engine_is_unreachable_is_the_farms_fault(config, tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    engine = dataclasses.replace(config, docker_host=f"unix://{tmp_path}/nobody.sock")
    with pytest.raises(EngineGone) as raised:
        gone = EngineMark(None, engine.docker_host).gone
        BuildKitRun(engine, gone).run(
            BuildSpec("t:1", "Dockerfile"), context, tmp_path, lambda text, **_: None
        )
    assert classify(raised.value) == (INFRA, "The Docker engine went away during the build")
