"""A deployed farm refuses public credentials at start (common/credentials.py), and the registry's
login takes its two forms: the registry's htpasswd and the workers' docker config
(common/registry_auth.py, worker/registry_login.py)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from common.config import Config, ConfigError
from common.credentials import require_strong_credentials, weak_credentials
from common.registry_auth import docker_config, htpasswd_line, registry_login
from worker.registry_login import PREFIX, log_in_to_registry, log_out

ROOT = Path(__file__).resolve().parents[1]
STRONG = {
    "BUILDFARM_REQUIRE_STRONG_CREDENTIALS": "true",
    "BUILDFARM_S3_ACCESS_KEY": "farm-7f3a",
    "BUILDFARM_S3_SECRET_KEY": "3b9d1e0c5a7f2468",
    "BUILDFARM_REDIS_URL": "redis://:9c1e77ab@redis:6379/0",
    "BUILDFARM_REGISTRY": "registry:5000",
    "BUILDFARM_REGISTRY_USERNAME": "buildfarm-worker",
    "BUILDFARM_REGISTRY_PASSWORD": "0f1e2d3c4b5a6978",
}


def python(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Runs Python in a process of its own with only these farm settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BUILDFARM_")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_deployed_farm_with_strong_credentials_passes_the_check():
    config = Config.from_env(STRONG)
    assert weak_credentials(config, registry=True) == []
    require_strong_credentials(config, registry=True)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"BUILDFARM_S3_ACCESS_KEY": ""}, "BUILDFARM_S3_ACCESS_KEY is the built-in default"),
        ({"BUILDFARM_S3_SECRET_KEY": "buildfarm-secret"}, "BUILDFARM_S3_SECRET_KEY is the built-in default"),
        ({"BUILDFARM_REDIS_URL": "redis://redis:6379/0"}, "BUILDFARM_REDIS_URL carries no password"),
        ({"BUILDFARM_BROKER_URL": "redis://redis:6379/3"}, "BUILDFARM_BROKER_URL carries no password"),
        ({"BUILDFARM_REGISTRY_PASSWORD": "", "BUILDFARM_REGISTRY_USERNAME": ""}, "are not set"),
    ],
)
def test_a_deployed_farm_refuses_each_public_credential_by_name(change, named):
    config = Config.from_env({**STRONG, **change})
    with pytest.raises(ConfigError, match="BUILDFARM_REQUIRE_STRONG_CREDENTIALS is on") as raised:
        require_strong_credentials(config, registry=True)
    assert named in str(raised.value)


def test_the_api_needs_no_registry_login_and_a_local_farm_keeps_its_defaults():
    without_registry = {**STRONG, "BUILDFARM_REGISTRY_USERNAME": "", "BUILDFARM_REGISTRY_PASSWORD": ""}
    require_strong_credentials(Config.from_env(without_registry), registry=False)
    # `make run` and `make test`: the setting is off, the built-in keys are fine.
    require_strong_credentials(Config(), registry=True)


def test_the_api_and_the_worker_stop_at_start_on_the_built_in_s3_keys():
    # Given a deployed farm's settings with MinIO's keys left at the farm's defaults
    env = {**STRONG, "BUILDFARM_S3_ACCESS_KEY": "buildfarm", "BUILDFARM_S3_SECRET_KEY": "buildfarm-secret"}
    # When the API app is made and the worker's actors are imported, as their servers do
    api = python("-c", "from api.app import create_app; create_app()", env=env)
    worker = python("-c", "import worker.actors", env=env)
    # Then both stop, saying which settings are weak
    for process in (api, worker):
        assert process.returncode != 0
        assert "BUILDFARM_S3_ACCESS_KEY is the built-in default" in process.stderr, process.stderr[-2000:]
        assert "BUILDFARM_S3_SECRET_KEY is the built-in default" in process.stderr


def test_a_half_given_or_malformed_registry_login_is_refused():
    with pytest.raises(ConfigError, match="set both"):
        registry_login(Config(registry_username="worker"))
    with pytest.raises(ConfigError, match="must not contain ':'"):
        registry_login(Config(registry_username="a:b", registry_password="p"))
    assert registry_login(Config()) is None


def test_the_htpasswd_line_is_a_bcrypt_hash_of_the_password():
    user, hashed = htpasswd_line("buildfarm-worker", "s3cret-passw0rd").rstrip("\n").split(":", 1)
    assert user == "buildfarm-worker" and hashed.startswith("$2b$")
    assert bcrypt.checkpw(b"s3cret-passw0rd", hashed.encode())
    assert not bcrypt.checkpw(b"another", hashed.encode())


def test_the_htpasswd_file_is_written_from_the_settings_for_its_owner_only(tmp_path):
    target = tmp_path / "htpasswd"
    done = python("-m", "common.registry_auth", str(target), env=STRONG)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    hashed = target.read_text().strip().split(":", 1)[1]
    assert bcrypt.checkpw(STRONG["BUILDFARM_REGISTRY_PASSWORD"].encode(), hashed.encode())
    refused = python("-m", "common.registry_auth", str(tmp_path / "none"), env={})
    assert refused.returncode == 2 and "are not set" in refused.stderr


def test_the_docker_config_adds_the_farm_registry_to_an_operators_logins():
    operator = {"auths": {"mirror.example:443": {"auth": "b3A6cHc="}}, "credsStore": "none"}
    config = docker_config("registry:5000", "worker", "pw", operator)
    assert config["auths"]["registry:5000"] == {"auth": "d29ya2VyOnB3"}  # base64("worker:pw")
    assert config["auths"]["mirror.example:443"] == {"auth": "b3A6cHc="}
    assert config["credsStore"] == "none"
    assert "registry:5000" not in operator["auths"], "the operator's config was changed"
    assert set(config["auths"]) == {"registry:5000", "mirror.example:443"}


def test_a_registry_on_localhost_gets_the_login_under_its_loopback_address_too():
    config = docker_config("localhost:5000", "worker", "pw")
    assert config["auths"] == {
        "localhost:5000": {"auth": "d29ya2VyOnB3"},
        "127.0.0.1:5000": {"auth": "d29ya2VyOnB3"},
    }


def test_a_worker_logs_its_docker_clients_in_through_a_folder_only_it_can_read(tmp_path, monkeypatch):
    # Given an operator's own docker config and a folder left by a worker that died
    own = tmp_path / "operator"
    own.mkdir()
    (own / "config.json").write_text(json.dumps({"auths": {"mirror.example:443": {"auth": "eDp5"}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(own))
    dead = tmp_path / f"{PREFIX}999999999-abc"
    dead.mkdir()
    config = Config.from_env(STRONG)
    # When the worker logs in
    folder = log_in_to_registry(config, base=tmp_path)
    # Then DOCKER_CONFIG names a private folder with both logins, and the dead one is gone
    assert os.environ["DOCKER_CONFIG"] == str(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "config.json").stat().st_mode) == 0o600
    auths = json.loads((folder / "config.json").read_text())["auths"]
    assert set(auths) == {"registry:5000", "mirror.example:443"}
    assert not dead.exists()
    log_out(folder)
    assert not folder.exists()


def test_a_farm_without_a_registry_login_leaves_the_docker_config_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    assert log_in_to_registry(Config(), base=tmp_path) is None
    assert "DOCKER_CONFIG" not in os.environ
