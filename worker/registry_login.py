"""Logs a worker process's docker clients in to the farm registry: BuildKit's pulls of the
`--cache-from` images and of base images in that registry go through the docker CLI, which reads
DOCKER_CONFIG/config.json, and so do the classic builder's (docker-py reads the same file when a
client is made). Pushes carry the login themselves (worker/docker_build.py).

The file holds the password: it lives in a folder of this process only (0700, file 0600), named
after its pid so that the next worker removes it if this one is killed outright. An operator's
own DOCKER_CONFIG (logins for private base images) is copied into it, not written to.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from common.config import Config
from common.owned_dirs import remove_orphans
from common.registry_auth import registry_login, write_docker_config

logger = logging.getLogger("buildfarm.worker")

PREFIX = "buildfarm-docker-"
_NAME = re.compile(rf"{PREFIX}(\d+)-.+")


def log_in_to_registry(config: Config, base: Path | None = None) -> Path | None:
    """Points DOCKER_CONFIG at a fresh config with the registry's login; returns its folder, or
    None on a farm whose registry takes anonymous requests."""
    remove_orphans(_NAME, base)
    if registry_login(config) is None:
        return None
    own = Path(os.environ["DOCKER_CONFIG"]) / "config.json" if os.environ.get("DOCKER_CONFIG") else None
    operator = json.loads(own.read_text()) if own is not None and own.is_file() else None
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
    write_docker_config(folder, config, operator)
    os.environ["DOCKER_CONFIG"] = str(folder)
    logger.info("logged in to the registry %s as %s", config.registry, config.registry_username)
    return folder


def log_out(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
