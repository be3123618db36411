"""A worker process has one context (worker/context.py), however many of its threads ask for it
first at once: Dramatiq's threads take builds while the boot (worker/middleware/lifecycle.py)
still makes it. Against the test services' Redis and S3, which making it reaches."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, process_env

THREADS = 8
ASK_AT_ONCE = f"""
import threading
from worker.context import worker_context

barrier, found = threading.Barrier({THREADS}), []

def ask():
    barrier.wait()
    found.append(worker_context())

threads = [threading.Thread(target=ask) for _ in range({THREADS})]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(found), len({{id(context) for context in found}}))
"""


def test_threads_that_ask_for_the_context_at_once_get_the_same_one(redis_client, s3):
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", ASK_AT_ONCE], cwd=ROOT, env=process_env(), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [str(THREADS), "1"]
