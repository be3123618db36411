"""Scratch folders of dead workers (worker/scratch.py): a worker killed with -9 leaves its
build's folder, secret files included; the next worker to start on the host removes it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from worker.scratch import PREFIX, remove_dead_workers_folders


def test_a_starting_worker_removes_the_folders_of_dead_workers_and_keeps_the_living_ones(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = tmp_path / f"{PREFIX}{dead.pid}-0a1b2c3d-x"
    (orphan / "secrets").mkdir(parents=True)
    (orphan / "secrets" / "tok").write_text("s3cr3t")
    living = tmp_path / f"{PREFIX}{os.getpid()}-4e5f6a7b-y"
    living.mkdir()
    unrelated = tmp_path / "someone-else"
    unrelated.mkdir()

    assert remove_dead_workers_folders(tmp_path) == 1
    assert not orphan.exists() and living.exists() and unrelated.exists()


def test_the_folder_of_a_worker_left_a_zombie_is_removed(tmp_path):
    # Given a worker process that died but was not reaped (its parent killed too, PID 1 slow)
    zombie = subprocess.Popen(["true"])
    wait_until_zombie(zombie.pid)
    orphan = tmp_path / f"{PREFIX}{zombie.pid}-0a1b2c3d-x"
    orphan.mkdir()
    try:
        # When a worker starts, then its folder goes
        assert remove_dead_workers_folders(tmp_path) == 1
        assert not orphan.exists()
    finally:
        zombie.wait()


def wait_until_zombie(pid: int) -> None:
    for _ in range(200):
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never became a zombie")
