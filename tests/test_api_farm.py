"""GET /farm and `buildfarm farm`: any token sees the workers, the queue and the pace of builds;
only an admin's token (`buildfarm token create --admin`) sees which build each slot runs."""

import uuid

import pytest

from cli.main import main as buildfarm
from common.records import builds, deployments, workers
from common.records.call import SyncRunner
from tests.test_integration_records import new_build, new_deployment

pytestmark = pytest.mark.in_process


@pytest.fixture
def busy_worker(redis_client):
    """A worker record (as a worker's heartbeat writes it) running a build of another tenant."""
    run = SyncRunner(redis_client).run
    deployment = run(deployments.create_deployment(new_deployment(f"t-{uuid.uuid4().hex[:12]}")))
    build = run(builds.create_build(new_build(deployment)))
    process = workers.WorkerProcess(
        worker_id=f"farm-test-{uuid.uuid4().hex[:6]}:42",
        host="farm-test",
        pid=42,
        threads=3,
        builder="buildkit",
        engine_version="20.10.24",
        started_at="2026-12-01T00:00:00.000Z",
        heartbeat_interval_s=30,
        expiry_s=120,
    )
    run(workers.heartbeat(process, [build.id]))
    yield process, build
    run(workers.remove_worker(process.worker_id))


def admin_token(capsys) -> str:
    assert buildfarm(["token", "create", "--tenant", "ops", "--name", "ops", "--admin"]) == 0
    return capsys.readouterr().out.strip()


def listed(farm: dict, worker_id: str) -> dict:
    return next(w for w in farm["workers"] if w["id"] == worker_id)


def test_a_tenant_sees_the_workers_and_their_counts_but_not_the_builds_they_run(client, busy_worker):
    process, build = busy_worker
    response = client.get("/farm")
    assert response.status_code == 200
    farm = response.json()
    worker = listed(farm, process.worker_id)
    assert farm["view"] == "tenant"
    assert (worker["host"], worker["threads"], worker["slots_in_use"]) == ("farm-test", 3, 1)
    assert worker["engine_version"] == "20.10.24" and worker["stale"] is False
    assert "builds" not in worker
    assert build.id not in response.text and build.deployment_id not in response.text
    host = next(h for h in farm["hosts"] if h["host"] == "farm-test")
    assert (host["processes"], host["threads"], host["slots_in_use"]) == (1, 3, 1)
    assert farm["slots"] >= 3 and farm["slots_in_use"] >= 1
    assert farm["queue"]["depth"] >= 1 and farm["queue"]["oldest_wait_s"] >= 0
    assert farm["builds_per_minute"] == round(farm["builds_last_hour"] / 60, 2)


def test_an_admin_token_also_sees_which_build_each_slot_runs(anonymous_client, busy_worker, capsys):
    process, build = busy_worker
    token = admin_token(capsys)
    response = anonymous_client.get("/api/v1/farm", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    farm = response.json()
    assert farm["view"] == "admin"
    assert listed(farm, process.worker_id)["builds"] == [
        {"build_id": build.id, "deployment_id": build.deployment_id, "number": build.number}
    ]
    assert buildfarm(["token", "revoke", token]) == 0


@pytest.mark.parametrize("header", [None, "Bearer bf_wrong", "Basic dXNlcjpwYXNz"])
def test_the_farm_refuses_a_missing_or_wrong_token(anonymous_client, header):
    headers = {"Authorization": header} if header else {}
    response = anonymous_client.get("/api/v1/farm", headers=headers)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_the_cli_prints_the_farm_and_the_builds_only_for_an_admin(
    api_url, tenant_token, busy_worker, capsys, monkeypatch
):
    process, build = busy_worker
    monkeypatch.setenv("BUILDFARM_URL", api_url)
    monkeypatch.setenv("BUILDFARM_TOKEN", tenant_token[1])
    assert buildfarm(["farm"]) == 0
    tenant_view = capsys.readouterr().out
    assert "host      farm-test: 1 processes × 3 threads, 1 in use" in tenant_view
    assert process.worker_id in tenant_view and build.id not in tenant_view
    monkeypatch.setenv("BUILDFARM_TOKEN", admin_token(capsys))
    assert buildfarm(["farm"]) == 0
    assert f"{process.worker_id}  build #{build.number} {build.id}" in capsys.readouterr().out
