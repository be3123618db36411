"""The farm registry's login, in the two forms that use it: the htpasswd line the registry checks
(bcrypt, the only hash distribution accepts) and the docker client configuration with which the
workers' docker CLI and engine authenticate. Only the workers hold the password.

    python -m common.registry_auth FILE

writes FILE, the htpasswd of BUILDFARM_REGISTRY_USERNAME/PASSWORD (deploy/ runs it before the
registry starts), so that the password has one home: the setting.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import bcrypt

from common.config import Config, ConfigError

USERNAME_SETTING = "BUILDFARM_REGISTRY_USERNAME"
PASSWORD_SETTING = "BUILDFARM_REGISTRY_PASSWORD"


def registry_login(config: Config) -> tuple[str, str] | None:
    """(username, password), or None on a farm whose registry takes anonymous requests."""
    if not config.registry_username and not config.registry_password:
        return None
    if not config.registry_username or not config.registry_password:
        raise ConfigError(f"set both {USERNAME_SETTING} and {PASSWORD_SETTING}, or neither")
    if ":" in config.registry_username:
        raise ConfigError(f"{USERNAME_SETTING} must not contain ':' (htpasswd separates with it)")
    return config.registry_username, config.registry_password


# The registry checks the hash on every request (a small push makes about 13): bcrypt's least
# cost, 4, took 1.2 ms a check here, 5 (Apache htpasswd's default) 2.4 ms and bcrypt's default of
# 12 850 ms on 2 loaded cores. Registry CPU per small build, scale-out runs alternating: about
# 110 ms at cost 5, 90 at 4, 75 without auth. The password is a random string (README), whose
# strength does not rest on the cost.
BCRYPT_ROUNDS = 4


def htpasswd_line(username: str, password: str) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS))
    return f"{username}:{hashed.decode()}\n"


def docker_config(registry: str, username: str, password: str, base: dict | None = None) -> dict:
    """A docker config.json: `base` (an operator's own logins) plus the farm registry's."""
    config = dict(base or {})
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    config["auths"] = {**config.get("auths", {}), **{name: {"auth": token} for name in _names(registry)}}
    return config


def _names(registry: str) -> list[str]:
    """The names a build may reach the registry by and the login is sent to: its own, and for a
    registry on `localhost` its loopback address too (the image check allows a tenant's own images
    under either, worker/image_policy.py; the engine sends a login only to the name it is for)."""
    domain = registry.partition("/")[0]
    host, colon, port = domain.partition(":")
    return [domain, f"127.0.0.1{colon}{port}"] if host.lower() == "localhost" else [domain]


def write_private(path: Path, text: str) -> None:
    """Writes a file only its owner can read, never readable by others even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_docker_config(folder: Path, config: Config, base: dict | None = None) -> Path:
    """Writes folder/config.json with the farm registry's login; returns the folder (a
    DOCKER_CONFIG). The farm must have a login (registry_login is not None)."""
    username, password = registry_login(config)
    text = json.dumps(docker_config(config.registry, username, password, base))
    write_private(folder / "config.json", text)
    return folder


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m common.registry_auth HTPASSWD_FILE", file=sys.stderr)
        return 2
    try:
        login = registry_login(Config.from_env())
    except ConfigError as e:
        print(f"registry_auth: {e}", file=sys.stderr)
        return 2
    if login is None:
        print(f"registry_auth: {USERNAME_SETTING} and {PASSWORD_SETTING} are not set", file=sys.stderr)
        return 2
    write_private(Path(argv[0]), htpasswd_line(*login))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
