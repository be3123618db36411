"""A worker's Docker engine killed in the middle of a build (issue 14, items 2 and 4): the worker
waits for it within BUILDFARM_ENGINE_RETRY_S and hands the build back (attempt + 1), whose next
attempt builds it again; out of attempts, the build fails as the farm's fault, in words.

The engine is the test's own, never the shared one: a second dockerd with its own data root,
exec root, pidfile and socket in a folder of the test session (vfs storage), in a network
namespace of its own (tests/netns.py), where 127.0.0.1 of the registry's port leads to the farm's
registry. It is started once for the module, and the base image loaded into it from the shared
engine; the engine, its containerd, the namespace and the mounts are removed at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import netns
from tests.conftest import BASE_IMAGE, Process, alone_on_the_queue, wait_until
from tests.farm import archived_log, build_in_its_run_step, failed_as_the_farms, logs, wait_for_status
from tests.holding_proxy import HoldingProxy

pytestmark = pytest.mark.e2e

BEFORE, AFTER = "before the engine went away", "after the sleep"
# The RUN step: its first line printed, then time for the engine to be killed (the test kills it
# once it reads the line, well under a second after it is printed). The next attempt runs the
# step whole, and an engine restarted after a kill waits for the step's container to end.
STEP = f"echo {BEFORE} && sleep 6 && echo {AFTER}"
GONE = "The Docker engine went away during the build"
# How long the engine stays dead.
DEAD_S = 4


class Engine:
    """A dockerd of the test, in the network namespace `host`, on a socket in `root`."""

    def __init__(self, root: Path, host: netns.Host, log: Path) -> None:
        self.root, self.socket = root, f"unix://{root}/docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": self.socket}
        command = ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec")]
        command += ["--pidfile", str(root / "dockerd.pid"), "-H", self.socket, "--storage-driver", "vfs"]
        # nsenter, not `ip netns exec`: the engine keeps the machine's mounts (its data root's).
        self.process = Process(["nsenter", f"--net=/run/netns/{host.netns}", *command], self.env, log)

    def docker(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], env=self.env, capture_output=True, **kwargs)

    def answering(self) -> None:
        wait_until(lambda: self.docker("version").returncode == 0, 60, 0.25, what="the test's engine")

    def kill(self) -> None:
        """SIGKILL: the engine says no goodbye to the build's CLI or stream."""
        self.process.stop(signal.SIGKILL)

    def crash(self) -> None:
        """SIGKILL to the engine, its containerd and their shims, as when its host fails: it can
        start again at once (the new engine would wait for a containerd left running, or a zombie
        not reaped, named by its pidfile, which goes with it; and 10 s for a shim's step to stop)."""
        self.kill()
        survivors = _processes_under(self.root)
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(map(_running, survivors)), 10, 0.02, what="the engine's processes to end")
        (self.root / "exec" / "containerd" / "containerd.pid").unlink(missing_ok=True)

    def start(self) -> None:
        self.process.start()
        self.answering()

    def remove(self) -> None:
        self.process.stop(timeout=30)
        # Its containerd and the shims run in sessions of their own; an engine that did not
        # exit cleanly leaves them, and mounts (its data root, its sandboxes' namespaces).
        for pid in _processes_under(self.root):
            subprocess.run(["kill", "-KILL", str(pid)], capture_output=True)
        for point in sorted(_mounts_under(self.root), reverse=True):  # the innermost first
            subprocess.run(["umount", "--lazy", point], capture_output=True)


def _processes_under(root: Path) -> list[int]:
    """The processes whose command line names a path under ROOT (the test's own folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(root).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # ended meanwhile
    return found


def _running(pid: int) -> bool:
    """Whether the process runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _mounts_under(root: Path) -> list[str]:
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [point for point in points if point.startswith(f"{root}/")]


@pytest.fixture(scope="module")
def module_engine(tmp_path_factory, logs_dir, docker_client, config):
    """The module's engine, started and given the base image once (the tests kill it and start
    it again themselves)."""
    with netns.hosts(4, net=233) as (host,):
        engine = None
        try:
            engine = Engine(
                tmp_path_factory.mktemp("own-engine"), host, logs_dir / f"own-engine-{host.netns}.log"
            )
            engine.answering()
            image = b"".join(docker_client.get_image(BASE_IMAGE))
            assert engine.docker("load", input=image).returncode == 0
            with host.loopback_forwarded(int(config.registry.rpartition(":")[2])):
                yield engine
        finally:
            if engine is not None:
                engine.remove()


@pytest.fixture
def own_engine(module_engine):
    """The module's engine, answering: started again if a test before left it dead."""
    if not module_engine.process.alive():
        module_engine.crash()
        module_engine.start()
    module_engine.answering()
    return module_engine


@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_an_engine_killed_mid_build_is_waited_for_and_the_build_is_built_again_under_attempt_2(
    builder, own_engine, client, worker, logs_dir, config, s3, redis_client
):
    # Given a worker whose engine is the test's, running a build's RUN step
    env = {"DOCKER_HOST": own_engine.socket, "BUILDFARM_BUILDER": builder, "BUILDFARM_ENGINE_RETRY_S": "60"}
    with alone_on_the_queue(worker, logs_dir, f"own-engine-{builder}", **env):
        build = build_in_its_run_step(client, STEP)
        wait_until(lambda: _printed(logs(client, build), BEFORE), 60, what="the step's first line")
        # When the engine is killed, and started again 4 s later
        killed = time.monotonic()
        own_engine.kill()
        time.sleep(DEAD_S)
        own_engine.start()
        build = wait_for_status(client, build, timeout=240)
        healed_s = time.monotonic() - killed
        archived = archived_log(redis_client, s3, config, build, 30)
    # Then the build succeeds under its second attempt
    built_again_under_attempt_2(client, build, archived)
    print(f"\n{builder}: engine dead {DEAD_S} s mid-step: success {healed_s:.1f} s after the kill, attempt 2")


@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_an_engine_restarted_before_the_worker_asks_is_still_told_from_a_users_failure(
    builder, own_engine, tmp_path, client, worker, logs_dir, config, s3, redis_client
):
    # Given a worker whose engine is the test's, behind a proxy that holds new connections while
    # the engine is down: the worker's ping after the build's error answers, as it does when the
    # engine restarts in under a second
    proxy = HoldingProxy(tmp_path / "proxy.sock", Path(own_engine.socket.removeprefix("unix://")))
    env = {"DOCKER_HOST": proxy.socket, "BUILDFARM_BUILDER": builder, "BUILDFARM_ENGINE_RETRY_S": "60"}
    try:
        with alone_on_the_queue(worker, logs_dir, f"proxied-engine-{builder}", **env):
            build = build_in_its_run_step(client, STEP)
            wait_until(lambda: _printed(logs(client, build), BEFORE), 60, what="the step's first line")
            # When the engine is killed and started again at once
            killed = time.monotonic()
            own_engine.crash()
            own_engine.start()
            back_s = time.monotonic() - killed
            build = wait_for_status(client, build, timeout=240)
            healed_s = time.monotonic() - killed
            archived = archived_log(redis_client, s3, config, build, 30)
    finally:
        proxy.close()
    # Then the build is not failed as the user's: it succeeds under its second attempt
    built_again_under_attempt_2(client, build, archived)
    print(f"\n{builder}: engine back in {back_s:.1f} s: success {healed_s:.1f} s after the kill, attempt 2")


def built_again_under_attempt_2(client, build: dict, archived: str) -> None:
    """Asserts the build succeeded under its second attempt, its first handed back when the
    engine went away, its log (live and archived) with both attempts once each, in order."""
    assert build["status"] == "success", (build.get("error"), build.get("error_kind"))
    assert build["attempt"] == 2
    assert build.get("error") is None
    # ...its log has the lines of both attempts, once each, in order, with what happened between
    text = logs(client, build)
    lines = text.splitlines()
    before = [i for i, line in enumerate(lines) if _printed(line, BEFORE)]
    after = [i for i, line in enumerate(lines) if _printed(line, AFTER)]
    waiting = lines.index(f"{GONE}: waiting up to 1 min for it to answer again")
    handed = [i for i, line in enumerate(lines) if line.startswith(f"--- {GONE} (it answered again ")]
    taken = [i for i, line in enumerate(lines) if line.startswith("--- attempt 2: taking over from worker ")]
    assert len(before) == 2 and len(after) == 1 and len(handed) == 1 and len(taken) == 1, text
    assert before[0] < waiting < handed[0] < taken[0] < before[1] < after[0] < lines.index("Build success")
    assert lines[handed[0]].endswith(": the build is handed back, to run again (attempt 2 of 3) ---")
    # ...as the archive does
    assert archived == text


def test_an_engine_killed_on_the_last_attempt_fails_the_build_as_the_farms_in_words(
    own_engine, client, worker, logs_dir, config, s3, redis_client
):
    # Given a worker allowed one attempt per build, whose engine is the test's
    env = {"DOCKER_HOST": own_engine.socket, "BUILDFARM_MAX_ATTEMPTS": "1"}
    with alone_on_the_queue(worker, logs_dir, "own-engine-last-attempt", **env):
        build = build_in_its_run_step(client, STEP)
        wait_until(lambda: _printed(logs(client, build), BEFORE), 60, what="the step's first line")
        # When its engine is killed during the build's only attempt
        own_engine.kill()
        build = wait_for_status(client, build)
        archived = archived_log(redis_client, s3, config, build, 30)
    # Then the build fails at once as the farm's fault, saying what happened in words
    assert failed_as_the_farms(client, build, f"{GONE}; no attempt is left (1 of 1 used)", 1) == archived


def _printed(text: str, words: str) -> bool:
    """Whether the step printed `words` (not only the step's command line, which names them)."""
    return any(words in line and "echo" not in line for line in text.splitlines())
