"""The start-up check of a deployed farm's credentials (BUILDFARM_REQUIRE_STRONG_CREDENTIALS, set
by deploy/compose.yaml and deploy/k8s): the built-in S3 keys are public, and so is a Redis or a
registry without a password; a farm run that way hands its tokens, webhook secrets and every
tenant's images to whoever reaches its network. A local farm (`make run`, `make test`) keeps
its defaults: the setting is off there, and its services listen on loopback only."""

from __future__ import annotations

from dataclasses import fields
from urllib.parse import urlsplit

from common.config import Config, ConfigError
from common.registry_auth import PASSWORD_SETTING, USERNAME_SETTING, registry_login

SETTING = "BUILDFARM_REQUIRE_STRONG_CREDENTIALS"
_DEFAULTS = {f.name: f.default for f in fields(Config)}


def weak_credentials(config: Config, *, registry: bool) -> list[str]:
    """What is missing or left at a public default; `registry`: the process pushes images."""
    weak = []
    for name in ("s3_access_key", "s3_secret_key"):
        if getattr(config, name) == _DEFAULTS[name]:
            weak.append(f"BUILDFARM_{name.upper()} is the built-in default")
    for name, url in (("BUILDFARM_REDIS_URL", config.redis_url), ("BUILDFARM_BROKER_URL", config.broker_url)):
        if url and not urlsplit(url).password:
            weak.append(f"{name} carries no password (redis://:PASSWORD@host:6379/0)")
    if registry and registry_login(config) is None:
        weak.append(f"{USERNAME_SETTING} and {PASSWORD_SETTING} are not set")
    return weak


def require_strong_credentials(config: Config, *, registry: bool) -> None:
    """Raises ConfigError naming every weak credential when the farm says it is deployed."""
    if not config.require_strong_credentials:
        return
    weak = weak_credentials(config, registry=registry)
    if weak:
        raise ConfigError(
            f"{SETTING} is on and this farm would run with public credentials: {'; '.join(weak)}. "
            "Set them (see the README, 'Credentials of a deployed farm')."
        )
