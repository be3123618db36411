"""Logs each worker process in to the farm registry before it takes a build, and removes its
login when it stops (worker/registry_login.py)."""

from __future__ import annotations

import dramatiq

from common.config import Config
from worker.registry_login import log_in_to_registry, log_out


class RegistryLogin(dramatiq.Middleware):
    # after_process_boot runs before the worker's threads take messages (after_worker_boot runs
    # once they already may): no build pulls from the registry before the login is written.
    def after_process_boot(self, broker) -> None:
        self.folder = log_in_to_registry(Config.from_env())

    def after_worker_shutdown(self, broker, worker) -> None:
        log_out(self.folder)
