"""The `buildfarm` CLI, run as a subprocess against the real farm (gunicorn API, Dramatiq
worker, dockerd, registry, Redis, S3): deploy a directory or a git URL (with build args,
without the cache), follow the log, list, get, print and cancel builds, set and list build
secrets. Nothing here is mocked."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from common.s3 import archive_key
from tests.conftest import ROOT, free_port, unique_subdomain, wait_until
from tests.farm import dockerfile, logs, wait_for_status

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "cli.main"]
# Runs the CLI in-process and reports its peak memory on stderr, last line.
CLI_WITH_PEAK_RSS = [
    sys.executable,
    "-c",
    "import resource, sys\n"
    "from cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "print('peak-rss-kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n",
]


def cli_env(api_url: str, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BUILDFARM_URL", "BUILDFARM_TOKEN")}
    env.update(BUILDFARM_URL=api_url, BUILDFARM_TOKEN=token)
    return env


def run_cli(
    api_url: str, token: str, *args: str, command=CLI, timeout: float = 180, stdin: str | None = None
):
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=cli_env(api_url, token),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def context_dir(root: Path, *run_steps: str, files: dict[str, str | bytes] | None = None) -> Path:
    """A build context directory; its nonce file keeps RUN steps out of the layer cache."""
    files = {"Dockerfile": dockerfile(*run_steps), "nonce": uuid.uuid4().hex, **(files or {})}
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def find_deployment(client, subdomain: str) -> dict:
    [deployment] = [
        d for d in client.get("/deployments", params={"limit": 100}).json() if d["subdomain"] == subdomain
    ]
    return deployment


def builds_of(client, deployment: dict) -> list[dict]:
    return client.get(f"/deployments/{deployment['id']}/builds").json()


def assert_clean_failure(result, code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_deploy_follow_sends_a_directory_without_its_dockerignored_files_and_exits_0_with_the_log(
    client, api_url, tenant_token, worker, config, s3, tmp_path
):
    check = "test ! -e ignored.txt && test ! -e secrets && test ! -e debug.log && test -e keep.log"
    root = context_dir(
        tmp_path,
        f"{check} && echo context-is-clean",
        files={
            ".dockerignore": "# not sent\nignored.txt\nsecrets/\n*.log\n!keep.log\n",
            "ignored.txt": "must not be sent",
            "secrets/key": "must not be sent",
            "debug.log": "must not be sent",
            "keep.log": "sent: an exception to *.log",
            "app.txt": "sent",
        },
    )
    subdomain = unique_subdomain("cli")

    result = run_cli(api_url, tenant_token[1], "deploy", str(root), "--subdomain", subdomain, "--follow")

    assert result.returncode == 0, result.stderr
    deployment = find_deployment(client, subdomain)
    assert deployment["source_type"] == "archive" and deployment["name"] == subdomain
    [build] = builds_of(client, deployment)
    assert build["status"] == "success"
    # The log on stdout, whole and in order, as the API serves it afterwards
    assert "context-is-clean" in result.stdout
    assert result.stdout.splitlines() == logs(client, build).splitlines()
    # ...the upload's progress and the outcome on stderr
    assert "Uploading [" in result.stderr and "100%" in result.stderr
    assert f"build #1 ({build['id']}) succeeded: {build['image_tag']}" in result.stderr
    assert build["image_tag"] == f"{config.registry}/{subdomain}:{build['commit_sha'][:8]}"
    # ...and the ignored files never left the machine: the stored upload lacks them
    stored = s3.get_object(config.sources_bucket, archive_key(deployment["id"], build["commit_sha"])).read()
    with tarfile.open(fileobj=io.BytesIO(stored), mode="r:gz") as tar:
        names = sorted(m.name for m in tar)
    assert names == [".dockerignore", "Dockerfile", "app.txt", "keep.log", "nonce"]


def test_deploy_follow_builds_a_directory_packed_in_several_gzip_members(
    client, api_url, tenant_token, worker, tmp_path
):
    # Incompressible files are stored in a gzip member of their own, the rest compressed in
    # others (cli/packing.py): the Dockerfile, under docker/, comes in a member after 8 MiB of them
    root = tmp_path / "ctx"
    for index in range(8):
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "data" / f"{index}.bin").write_bytes(os.urandom(1024 * 1024))
    (root / "docker").mkdir()
    (root / "docker" / "Dockerfile").write_text(
        dockerfile("test $(cat data/*.bin | wc -c) -eq 8388608 && echo all-8-mib-arrived")
    )
    subdomain = unique_subdomain("cli")

    result = run_cli(
        api_url,
        tenant_token[1],
        "deploy",
        str(root),
        "--subdomain",
        subdomain,
        "--dockerfile",
        "docker/Dockerfile",
        "--follow",
        timeout=120,
    )

    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "all-8-mib-arrived" in result.stdout
    [build] = builds_of(client, find_deployment(client, subdomain))
    assert build["status"] == "success"


def test_deploy_follow_exits_1_when_the_build_fails_with_the_failure_on_stderr(
    client, api_url, tenant_token, worker, tmp_path
):
    root = context_dir(tmp_path, "echo about-to-fail && exit 3")
    subdomain = unique_subdomain("cli")

    result = run_cli(api_url, tenant_token[1], "deploy", str(root), "--subdomain", subdomain, "--follow")

    assert_clean_failure(result, 1, "failed", "exit code: 3", "image_tag: -")
    assert "about-to-fail" in result.stdout and result.stdout.splitlines()[-1] == "Build failed"
    [build] = builds_of(client, find_deployment(client, subdomain))
    assert build["status"] == "failed"


def test_deploying_again_to_a_subdomain_reuses_its_deployment_with_a_second_build(
    client, api_url, tenant_token, worker, tmp_path
):
    root = context_dir(tmp_path, "echo first")
    subdomain = unique_subdomain("cli")

    first = run_cli(api_url, tenant_token[1], "deploy", str(root), "--subdomain", subdomain)
    (root / "nonce").write_text(uuid.uuid4().hex)
    second = run_cli(
        api_url, tenant_token[1], "deploy", str(root), "--subdomain", subdomain, "--name", "other"
    )

    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    assert "Created deployment" in first.stderr and "Using deployment" in second.stderr
    deployment = find_deployment(client, subdomain)  # exactly one with this subdomain
    builds = builds_of(client, deployment)
    # Without --follow, the build id is what stdout carries
    assert [b["id"] for b in builds] == [second.stdout.strip(), first.stdout.strip()]
    assert [b["number"] for b in builds] == [2, 1]
    assert [wait_for_status(client, b)["status"] for b in builds] == ["success", "success"]


def test_a_redeploy_cannot_swap_a_deployments_dockerfile_or_source(
    client, api_url, tenant_token, worker, tmp_path
):
    token = tenant_token[1]
    root = context_dir(tmp_path / "app", "true", files={"Other.Dockerfile": dockerfile("true")})
    subdomain = unique_subdomain("cli")
    first = run_cli(api_url, token, "deploy", str(root), "--subdomain", subdomain)
    assert first.returncode == 0, first.stderr
    deployment = find_deployment(client, subdomain)
    # The API cannot change a deployment's dockerfile_path: refused before anything is sent
    other = run_cli(
        api_url, token, "deploy", str(root), "--subdomain", subdomain, "--dockerfile", "Other.Dockerfile"
    )
    assert_clean_failure(other, 2, "has dockerfile_path 'Dockerfile', not 'Other.Dockerfile'")
    assert "Uploading" not in other.stderr
    # ...while naming the same Dockerfile differently is no change
    same = run_cli(
        api_url, token, "deploy", str(root), "--subdomain", subdomain, "--dockerfile", "./Dockerfile"
    )
    assert same.returncode == 0, same.stderr
    # A directory without the deployment's Dockerfile is refused too
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = run_cli(api_url, token, "deploy", str(empty), "--subdomain", subdomain)
    assert_clean_failure(missing, 2, f"no Dockerfile at {empty / 'Dockerfile'}")
    assert [b["number"] for b in builds_of(client, deployment)] == [2, 1]
    for build in builds_of(client, deployment):
        wait_for_status(client, build)


def test_builds_list_get_and_logs_find_a_deployment_by_subdomain_or_id(
    client, api_url, tenant_token, worker, tmp_path
):
    token = tenant_token[1]
    subdomain = unique_subdomain("cli")
    deployed = run_cli(
        api_url, token, "deploy", str(context_dir(tmp_path, "seq 1 5")), "--subdomain", subdomain
    )
    deployment = find_deployment(client, subdomain)
    build = wait_for_status(client, {"id": deployed.stdout.strip(), "deployment_id": deployment["id"]})
    assert build["status"] == "success"

    listed = run_cli(api_url, token, "builds", "list", "--deployment", subdomain)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["number", "id", "status", "created_at", "finished_at", "image_tag"]
    assert row.split() == [
        "1",
        build["id"],
        "success",
        build["created_at"],
        build["finished_at"],
        build["image_tag"],
    ]

    as_json = run_cli(api_url, token, "builds", "list", "-d", deployment["id"], "--json")
    assert json.loads(as_json.stdout) == builds_of(client, deployment)
    none_failed = run_cli(api_url, token, "builds", "list", "-d", subdomain, "--status", "failed")
    assert none_failed.returncode == 0 and none_failed.stdout == ""
    assert f"no builds with status failed in {subdomain}" in none_failed.stderr

    got = run_cli(api_url, token, "builds", "get", build["id"], "--deployment", subdomain)
    assert got.returncode == 0, got.stderr
    fields = dict(line.split(None, 1) for line in got.stdout.splitlines())
    assert fields["status"] == "success" and fields["image_tag"] == build["image_tag"]
    assert fields["error"] == fields["error_kind"] == "-"
    got_json = run_cli(api_url, token, "builds", "get", build["id"], "-d", deployment["id"], "--json")
    assert (
        json.loads(got_json.stdout)
        == client.get(f"/deployments/{deployment['id']}/builds/{build['id']}").json()
    )

    printed = run_cli(api_url, token, "builds", "logs", build["id"], "--deployment", subdomain)
    assert printed.returncode == 0 and printed.stdout == logs(client, build)
    followed = run_cli(api_url, token, "builds", "logs", build["id"], "--deployment", subdomain, "--follow")
    assert followed.returncode == 0 and followed.stdout == logs(client, build)
    assert "succeeded" in followed.stderr

    # A finished build cannot be cancelled: the server's conflict, said plainly
    refused = run_cli(api_url, token, "builds", "cancel", build["id"], "--deployment", subdomain)
    assert_clean_failure(refused, 3, "HTTP 409 conflict")


def test_builds_cancel_stops_a_running_build_and_its_follower_exits_1(
    client, api_url, tenant_token, worker, tmp_path
):
    token = tenant_token[1]
    subdomain = unique_subdomain("cli")
    root = context_dir(tmp_path, "echo started-sleeping && sleep 60")
    deployed = run_cli(api_url, token, "deploy", str(root), "--subdomain", subdomain)
    deployment = find_deployment(client, subdomain)
    build = {"id": deployed.stdout.strip(), "deployment_id": deployment["id"]}
    follower = subprocess.Popen(
        [*CLI, "builds", "logs", build["id"], "--deployment", subdomain, "--follow"],
        cwd=ROOT,
        env=cli_env(api_url, token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_status(client, build, statuses=("building",), timeout=60)
        wait_until(lambda: "started-sleeping" in logs(client, build), 60, what="the RUN step to start")

        cancelled = run_cli(api_url, token, "builds", "cancel", build["id"], "--deployment", subdomain)

        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == "cancelling" and "stop requested" in cancelled.stderr
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 1, err
    assert "started-sleeping" in out and f"({build['id']}) cancelled" in err
    assert "(error_kind: cancelled, image_tag: -)" in err
    assert wait_for_status(client, build)["status"] == "cancelled"
    again = run_cli(api_url, token, "builds", "cancel", build["id"], "--deployment", subdomain)
    assert again.returncode == 0 and again.stdout.strip() == "cancelled"


class CuttingProxy:
    """A TCP proxy to the API on loopback whose open connections can be cut at will."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            cut, self.sockets = self.sockets, []
        for s in cut:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_a_dropped_log_stream_resumes_after_the_lines_already_printed(
    client, api_url, tenant_token, worker, tmp_path
):
    proxy = CuttingProxy(int(api_url.rsplit(":", 1)[1]))
    script = "for i in $(seq 1 40); do echo tick-$i; sleep 0.1; done"
    root = context_dir(tmp_path, script)
    subdomain = unique_subdomain("cli")
    process = subprocess.Popen(
        [*CLI, "deploy", str(root), "--subdomain", subdomain, "--follow"],
        cwd=ROOT,
        env=cli_env(f"http://127.0.0.1:{proxy.port}", tenant_token[1]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # When the connection drops mid-build, after tick-10 was printed
        wait_until(lambda: any(line == "tick-10\n" for line in lines), 120, what="tick-10 on stdout")
        proxy.cut()
        process.wait(120)
        reader.join(10)
        err = process.stderr.read()
    finally:
        process.kill()
        proxy.close()
    # Then the CLI reconnected and printed every line exactly once, in order
    assert process.returncode == 0, err
    assert "log stream interrupted" in err and "resuming after line" in err
    [build] = builds_of(client, find_deployment(client, subdomain))
    assert [line.rstrip("\n") for line in lines] == logs(client, build).splitlines()
    assert [line for line in lines if line.startswith("tick-")] == [f"tick-{i}\n" for i in range(1, 41)]


def test_a_git_url_is_deployed_as_a_git_deployment_whose_source_cannot_be_swapped(
    client, api_url, tenant_token, worker, tmp_path, request
):
    url, (_, second) = request.getfixturevalue("two_commit_repo")
    token = tenant_token[1]
    subdomain = unique_subdomain("cli")

    result = run_cli(api_url, token, "deploy", url, "--subdomain", subdomain, "--branch", "main", "--follow")

    assert result.returncode == 0, result.stderr
    assert "version two" in result.stdout
    deployment = find_deployment(client, subdomain)
    assert (deployment["source_type"], deployment["repo_url"], deployment["branch"]) == ("git", url, "main")
    assert builds_of(client, deployment)[0]["commit_sha"] == second
    # The same URL again: a second build of the same deployment
    again = run_cli(api_url, token, "deploy", url, "--subdomain", subdomain)
    assert again.returncode == 0 and "Using deployment" in again.stderr, again.stderr
    assert len(builds_of(client, deployment)) == 2
    # Another branch, or a directory, on that subdomain: refused, nothing built
    other_branch = run_cli(api_url, token, "deploy", url, "--subdomain", subdomain, "--branch", "dev")
    assert_clean_failure(other_branch, 2, "cannot be changed")
    directory = run_cli(
        api_url, token, "deploy", str(context_dir(tmp_path, "true")), "--subdomain", subdomain
    )
    assert_clean_failure(directory, 2, "builds from git")
    assert len(builds_of(client, deployment)) == 2
    wait_for_status(client, builds_of(client, deployment)[0])


def test_api_errors_are_printed_from_the_servers_body_and_exit_3(
    client, api_url, tenant_token, worker, tmp_path
):
    token = tenant_token[1]
    root = context_dir(tmp_path, "true")
    invalid = run_cli(api_url, token, "deploy", str(root), "--subdomain", "Not_A_Label")
    assert_clean_failure(invalid, 3, "must be a DNS label", "HTTP 422 validation_error")

    subdomain = unique_subdomain("cli")
    deployed = run_cli(api_url, token, "deploy", str(root), "--subdomain", subdomain)
    assert deployed.returncode == 0, deployed.stderr
    unknown = str(uuid.uuid4())
    missing = run_cli(api_url, token, "builds", "get", unknown, "--deployment", subdomain)
    assert_clean_failure(missing, 3, "Build not found [HTTP 404 not_found]")
    nowhere = run_cli(api_url, token, "builds", "list", "--deployment", "no-such-app")
    assert_clean_failure(nowhere, 3, "No deployment of yours has the id or subdomain 'no-such-app'")
    stranger = run_cli(api_url, "bf_not_a_token", "builds", "list", "--deployment", subdomain)
    assert_clean_failure(stranger, 3, "HTTP 401 unauthorized", "check BUILDFARM_TOKEN")
    wait_for_status(client, builds_of(client, find_deployment(client, subdomain))[0])


def test_an_unreachable_api_or_missing_settings_fail_with_a_message_not_a_traceback(tmp_path):
    root = context_dir(tmp_path, "true")
    down = f"http://127.0.0.1:{free_port()}"
    unreachable = run_cli(down, "bf_x", "deploy", str(root), "--subdomain", "app")
    assert_clean_failure(unreachable, 4, f"cannot reach the API at {down}")
    no_token = run_cli(down, "", "builds", "list", "-d", "app")
    assert_clean_failure(no_token, 2, "set BUILDFARM_TOKEN or pass --token")
    no_scheme = run_cli("127.0.0.1:8000", "bf_x", "builds", "list", "-d", "app")
    assert_clean_failure(no_scheme, 2, "must start with http:// or https://")
    nothing = run_cli(down, "bf_x", "deploy", str(tmp_path / "missing"), "--subdomain", "app")
    assert_clean_failure(nothing, 2, "no such directory, nor a git URL")
    # --url and --token flags win over the environment, before or after the command
    flagged = run_cli(
        down, "bf_x", "--url", "http://127.0.0.1:1", "builds", "list", "-d", "app", "--token", "t"
    )
    assert_clean_failure(flagged, 4, "cannot reach the API at http://127.0.0.1:1")


def test_a_large_directory_is_uploaded_streaming_with_bounded_cli_memory(
    client, api_url, tenant_token, worker, tmp_path
):
    def peak_rss_kib(result) -> int:
        assert result.returncode == 0, result.stderr
        return int(result.stderr.splitlines()[-1].split()[1])

    token = tenant_token[1]
    small = context_dir(tmp_path / "small", "true")
    big = context_dir(tmp_path / "big", "true")
    with (big / "blob.bin").open("wb") as f:
        for _ in range(48):
            f.write(os.urandom(1 << 20))  # incompressible: the archive is as big
    subdomain = unique_subdomain("cli")

    baseline = peak_rss_kib(
        run_cli(api_url, token, "deploy", str(small), "--subdomain", subdomain, command=CLI_WITH_PEAK_RSS)
    )
    started = time.monotonic()
    result = run_cli(api_url, token, "deploy", str(big), "--subdomain", subdomain, command=CLI_WITH_PEAK_RSS)
    peak = peak_rss_kib(result)
    for build in builds_of(client, find_deployment(client, subdomain)):
        client.post(f"/deployments/{build['deployment_id']}/builds/{build['id']}/cancel")

    growth_mib = (peak - baseline) / 1024
    print(
        f"\nCLI peak RSS {baseline / 1024:.1f} MiB small, {peak / 1024:.1f} MiB for a 48 MiB upload "
        f"(+{growth_mib:.1f} MiB) in {time.monotonic() - started:.1f} s"
    )
    assert re.search(r"Uploaded 48\.\d MiB", result.stderr), result.stderr
    assert growth_mib < 16, f"the CLI grew by {growth_mib:.1f} MiB for a 48 MiB upload"


def test_deploy_sends_its_build_args_and_no_cache_with_the_build(client, api_url, tenant_token, tmp_path):
    token = tenant_token[1]
    root = context_dir(tmp_path, "true")
    subdomain = unique_subdomain("cli")
    # Split on the first '=': values may hold '=' or be empty; a repeated name: the last wins
    args = ["--build-arg", "A=1", "--build-arg", "B=x=y", "--build-arg", "EMPTY=", "--build-arg", "A=2"]

    result = run_cli(api_url, token, "deploy", str(root), "--subdomain", subdomain, *args, "--no-cache")

    assert result.returncode == 0, result.stderr
    deployment = find_deployment(client, subdomain)
    [build] = builds_of(client, deployment)
    assert build["id"] == result.stdout.strip()
    assert build["build_args"] == {"A": "2", "B": "x=y", "EMPTY": ""} and build["no_cache"] is True
    # The args were the deploy's: the deployment keeps none, and a plain deploy uses the cache
    assert deployment["build_args"] == {}
    plain = run_cli(api_url, token, "deploy", str(root), "--subdomain", subdomain)
    assert plain.returncode == 0, plain.stderr
    assert builds_of(client, deployment)[0]["build_args"] == {}
    assert builds_of(client, deployment)[0]["no_cache"] is False
    # A malformed option is a usage error; a name the API refuses, the API's error
    malformed = run_cli(api_url, token, "deploy", str(root), "--subdomain", subdomain, "--build-arg", "A")
    assert_clean_failure(malformed, 2, "argument --build-arg: 'A': give NAME=VALUE")
    refused = run_cli(
        api_url, token, "deploy", str(root), "--subdomain", subdomain, "--build-arg", "BUILDKIT_X=1"
    )
    assert_clean_failure(refused, 3, "Each name in 'build_args' must be an ARG name", "HTTP 422")
    assert len(builds_of(client, deployment)) == 2
    for queued in builds_of(client, deployment):  # no worker here: leave none for a later one
        client.post(f"/deployments/{deployment['id']}/builds/{queued['id']}/cancel")


def test_secrets_are_set_from_stdin_listed_and_removed_and_the_value_is_never_logged(
    client, api_url, tenant_token, logs_dir
):
    token = tenant_token[1]
    deployment = client.post(
        "/deployments", json={"name": "s", "subdomain": unique_subdomain("cli"), "source_type": "archive"}
    ).json()
    value = f"value-{uuid.uuid4().hex}"

    # By subdomain or id, the value on stdin (one final newline dropped)
    set_one = run_cli(
        api_url, token, "secrets", "set", deployment["subdomain"], "npm_token", stdin=value + "\n"
    )
    set_two = run_cli(api_url, token, "secrets", "set", deployment["id"], "other", stdin="x")

    assert set_one.returncode == 0 and set_two.returncode == 0, (set_one.stderr, set_two.stderr)
    assert f"Set secret npm_token of {deployment['subdomain']}" in set_one.stderr
    listed = run_cli(api_url, token, "secrets", "ls", deployment["subdomain"])
    assert listed.returncode == 0 and listed.stdout.splitlines() == ["npm_token", "other"]
    assert client.get(f"/deployments/{deployment['id']}/secrets").json() == {"names": ["npm_token", "other"]}
    # The value is in no output of the CLI and no line the API server logged
    for result in (set_one, set_two, listed):
        assert value not in result.stdout + result.stderr
    assert (logs_dir / "api.log").read_text(), "the server logged nothing: the check would prove nothing"
    assert value not in (logs_dir / "api.log").read_text()

    removed = run_cli(api_url, token, "secrets", "rm", deployment["subdomain"], "npm_token")
    assert removed.returncode == 0, removed.stderr
    assert run_cli(api_url, token, "secrets", "ls", deployment["id"]).stdout.splitlines() == ["other"]
    again = run_cli(api_url, token, "secrets", "rm", deployment["subdomain"], "npm_token")
    assert_clean_failure(again, 3, "Secret not found [HTTP 404 not_found]")
    empty = run_cli(api_url, token, "secrets", "set", deployment["subdomain"], "blank", stdin="")
    assert_clean_failure(empty, 2, "no value for blank: give it on stdin")
    bad_name = run_cli(api_url, token, "secrets", "set", deployment["subdomain"], "bad name", stdin="x")
    assert_clean_failure(bad_name, 3, "a secret name", "HTTP 422")
