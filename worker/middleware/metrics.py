"""The worker's Prometheus middleware: sets up each worker process's series (worker/metrics.py
says why and how) and has the Dramatiq master fork the process that serves them."""

from __future__ import annotations

import logging
import os
import shutil
import threading

import dramatiq

from common import metrics_dir
from common.config import Config
from common.logging_json import use_json_logging
from common.metrics_access import CHALLENGE, may_read_metrics, refusal_body
from worker import metrics

logger = logging.getLogger("buildfarm.metrics")


class WorkerMetrics(dramatiq.Middleware):
    def __init__(self) -> None:
        self.port = Config.from_env().metrics_port  # 0 turns the endpoint off

    @property
    def forks(self):
        return [serve_metrics] if self.port else []

    def after_process_boot(self, broker) -> None:
        if not self.port:
            return
        try:
            metrics_dir.use_shared_run_dir(metrics.KIND, os.getppid())
        except (OSError, RuntimeError) as e:
            logger.warning("worker metrics are off: %s", e)
        else:
            metrics.start_series()

    def after_worker_shutdown(self, broker, worker) -> None:
        if metrics.series_started():
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


def serve_metrics() -> int:
    """The fork that serves the host's metrics; it removes the run's directory when it stops."""
    use_json_logging()
    metrics_dir.sweep(metrics.KIND)
    path = metrics_dir.use_shared_run_dir(metrics.KIND, os.getppid())
    from http.server import ThreadingHTTPServer

    from prometheus_client import CollectorRegistry, MetricsHandler, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    config = Config.from_env()
    host, port = config.metrics_host, config.metrics_port
    token = config.metrics_token

    class Handler(MetricsHandler.factory(registry)):
        def do_GET(self) -> None:
            if may_read_metrics(token, self.headers.get("Authorization")):
                super().do_GET()
                return
            body = refusal_body()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("WWW-Authenticate", CHALLENGE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    try:
        try:
            server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            logger.warning("worker metrics not served: %s:%s: %s", host, port, e)
            threading.Event().wait()  # keep the directory until the master stops this fork
        logger.info("worker metrics on http://%s:%s/metrics", host, port)
        server.serve_forever()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return 0
