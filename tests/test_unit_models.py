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
    ("redis_url", "broker_url", "queue_url"),
    [
        ("redis://127.0.0.1:6379/0", "", "redis://127.0.0.1:6379/1"),
        ("redis://:secret@redis:6379/3", "", "redis://:secret@redis:6379/4"),
        ("redis://redis:6379", "", "redis://redis:6379/1"),
        ("rediss://redis:6380/0?ssl_cert_reqs=none", "", "rediss://redis:6380/1?ssl_cert_reqs=none"),
        ("unix:///run/redis.sock", "", "unix:///run/redis.sock?db=1"),
        ("unix:///run/redis.sock?db=4", "", "unix:///run/redis.sock?db=5"),
        ("redis://redis:6379/15", "redis://redis:6379/14", "redis://redis:6379/14"),
        ("redis://redis:6379/0", "redis://queue:6379/0", "redis://queue:6379/0"),
    ],
)
def test_the_queue_gets_a_redis_database_of_its_own(redis_url, broker_url, queue_url):
    """Dramatiq's maintenance runs KEYS over its database: never the one holding the records."""
    config = Config.from_env({"BUILDFARM_REDIS_URL": redis_url, "BUILDFARM_BROKER_URL": broker_url})
    assert config.queue_redis_url == queue_url


@pytest.mark.parametrize(
    "env",
    [
        {"BUILDFARM_BUILD_TIMEOUT_S": "soon"},
        {"BUILDFARM_S3_SECURE": "maybe"},
        {"BUILDFARM_MAX_UPLOAD_BYTES": "-1"},
        {"BUILDFARM_LOG_MAX_LINE_BYTES": "10"},  # no room for a piece of a line
        {"BUILDFARM_REDIS_URL": "redis://r:6379/x"},
        {"BUILDFARM_REDIS_URL": "redis://r:6379/15"},  # no next database for the queue
        {"BUILDFARM_REDIS_URL": "redis://r:6379/2", "BUILDFARM_BROKER_URL": "redis://:pw@r:6379/2"},
        {"BUILDFARM_REDIS_URL": "redis://r:6379", "BUILDFARM_BROKER_URL": "redis://r:6379/0"},
    ],
)
def test_config_refuses_values_it_cannot_use(env):
    with pytest.raises(ConfigError):
        Config.from_env(env)
