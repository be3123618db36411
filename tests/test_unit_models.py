"""The domain model, the queue encoding and the configuration, as pure logic."""

import re

import dramatiq
import pytest

from common.broker import MsgpackEncoder, build_message
from common.config import Config, ConfigError
from common.models import Build, BuildStatus, image_tag, utc_now


def test_image_tag_follows_the_seed_scheme():
    assert image_tag("registry:5000", "myapp", "abc123def456789") == "registry:5000/myapp:abc123de"


def test_times_are_rfc3339_utc_with_z():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_now())


def test_a_build_survives_a_round_trip_through_a_redis_hash():
    build = Build(
        id="b",
        deployment_id="d",
        tenant="t",
        number=7,
        status="pending",
        subdomain="s",
        source_type="archive",
        dockerfile_path="Dockerfile",
        created_at=utc_now(),
        attempt=2,
    )
    stored = {k.encode(): v.encode() for k, v in build.to_redis().items()}
    assert Build.from_redis(stored) == build
    assert Build.from_redis(stored).image_tag is None


def test_only_success_failed_and_cancelled_are_terminal():
    assert {s for s in BuildStatus if s.is_terminal} == {
        BuildStatus.SUCCESS,
        BuildStatus.FAILED,
        BuildStatus.CANCELLED,
    }


def test_queue_messages_round_trip_through_msgpack():
    encoder = MsgpackEncoder()
    message = build_message(Config(), "build-1").asdict()
    message["args"] = list(message["args"])
    assert encoder.decode(encoder.encode(message)) == message
    with pytest.raises(dramatiq.DecodeError):
        encoder.decode(b"\xc1")


def test_config_reads_typed_values_from_the_environment():
    config = Config.from_env(
        {"BUILDFARM_BUILD_TIMEOUT_S": "60", "BUILDFARM_S3_SECURE": "true", "DOCKER_HOST": "tcp://x:2375"}
    )
    assert (config.build_timeout_s, config.s3_secure, config.docker_host) == (60, True, "tcp://x:2375")


@pytest.mark.parametrize(
    "env",
    [
        {"BUILDFARM_BUILD_TIMEOUT_S": "soon"},
        {"BUILDFARM_S3_SECURE": "maybe"},
        {"BUILDFARM_MAX_UPLOAD_BYTES": "-1"},
    ],
)
def test_config_refuses_values_it_cannot_use(env):
    with pytest.raises(ConfigError):
        Config.from_env(env)
