"""The Redis data model (common.records) on real Redis, through both adapters: pages read in
one round trip, deployments created and deleted whole, tokens kept by common/tokens.py alone."""

import asyncio
import threading
import uuid

import pytest
import redis.asyncio as aioredis

from api.store import RecordStore
from common import tokens
from common.contract import public_build
from common.models import Build, BuildStatus, Deployment, utc_now
from common.records import builds, deployments, fields, keys
from common.records.call import SyncRunner

END_OF_COUNT = "end-of-count"
# What a client sends once per new connection, not per request.
CONNECTION_SETUP = frozenset({"HELLO", "CLIENT", "AUTH", "SELECT"})


def new_deployment(tenant: str) -> Deployment:
    now = utc_now()
    return Deployment(
        id=str(uuid.uuid4()),
        tenant=tenant,
        name="a",
        subdomain=f"app-{uuid.uuid4().hex[:10]}",
        source_type="archive",
        repo_url=None,
        branch=None,
        dockerfile_path="Dockerfile",
        created_at=now,
        updated_at=now,
    )


def new_build(deployment: Deployment) -> Build:
    return Build(
        id=str(uuid.uuid4()),
        deployment_id=deployment.id,
        tenant=deployment.tenant,
        number=0,
        status=BuildStatus.PENDING.value,
        subdomain=deployment.subdomain,
        source_type="archive",
        dockerfile_path="Dockerfile",
        created_at=utc_now(),
    )


@pytest.fixture
def deployment(run) -> Deployment:
    return run(deployments.create_deployment(new_deployment(f"t-{uuid.uuid4().hex[:12]}")))


def test_builds_are_numbered_and_paged_newest_first_below_the_cursor(run, deployment):
    created = [run(builds.create_build(new_build(deployment))) for _ in range(5)]
    assert [b.number for b in created] == [1, 2, 3, 4, 5]
    first, cursor, _ = run(builds.list_builds(deployment.tenant, deployment.id, None, 2, None))
    assert [b.number for b in first] == [5, 4] and cursor == 4
    second, cursor, _ = run(builds.list_builds(deployment.tenant, deployment.id, None, 2, cursor))
    third, cursor, _ = run(builds.list_builds(deployment.tenant, deployment.id, None, 2, cursor))
    assert [b.number for b in second + third] == [3, 2, 1] and cursor is None
    assert third[0] == public_build(run(builds.load(created[0].id)))


def test_a_page_of_builds_is_read_only_for_the_tenant_that_owns_the_deployment(run, deployment):
    run(builds.create_build(new_build(deployment)))
    assert run(builds.list_builds("another-tenant", deployment.id, None, 10, None)) is None
    assert run(builds.list_builds(deployment.tenant, str(uuid.uuid4()), None, 10, None)) is None
    page = run(builds.list_builds(deployment.tenant, deployment.id, None, 10, None)).builds
    assert len(page) == 1


def test_a_page_of_one_status_lists_only_builds_in_it(run, deployment):
    older, newer = (run(builds.create_build(new_build(deployment))) for _ in range(2))
    assert run(builds.transition(older.id, deployment.id, BuildStatus.CANCELLED)).ok
    cancelled, pending = (
        run(builds.list_builds(deployment.tenant, deployment.id, status, 10, None)).builds
        for status in (BuildStatus.CANCELLED, BuildStatus.PENDING)
    )
    assert [b.id for b in cancelled] == [older.id] and [b.id for b in pending] == [newer.id]


def test_deployments_are_paged_with_the_status_of_their_latest_build(run):
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    never_built, built = (run(deployments.create_deployment(new_deployment(tenant))) for _ in range(2))
    build = run(builds.create_build(new_build(built)))
    run(builds.transition(build.id, built.id, BuildStatus.BUILDING))
    page, cursor = run(deployments.list_deployments(tenant, 10, None))
    assert [(d.id, status) for d, status in page] == [(built.id, "building"), (never_built.id, "created")]
    assert page[0][0].latest_build_id == build.id and cursor is None


def test_a_subdomain_belongs_to_one_deployment(run, deployment):
    taken = new_deployment("another-tenant")
    taken.subdomain = deployment.subdomain
    with pytest.raises(deployments.SubdomainTaken):
        run(deployments.create_deployment(taken))
    assert run(deployments.get_any_deployment(taken.id)) is None


def test_a_deployment_with_an_active_build_is_kept_and_an_idle_one_goes_whole(run, redis_client, deployment):
    build = run(builds.create_build(new_build(deployment)))
    with pytest.raises(deployments.ActiveBuilds):
        run(deployments.delete_deployment(deployment))
    run(builds.transition(build.id, deployment.id, BuildStatus.CANCELLED))
    run(deployments.delete_deployment(deployment))
    assert run(deployments.get_any_deployment(deployment.id)) is None and run(builds.load(build.id)) is None
    left = redis_client.keys(f"*{deployment.id}*") + redis_client.keys(f"*{deployment.subdomain}*")
    # Only the subdomain's tombstone stays: it keeps the subdomain its tenant's.
    assert left == [keys.subdomain_tombstone(deployment.subdomain).encode()]
    assert redis_client.get(left[0]) == deployment.tenant.encode()


def test_a_deleted_deployments_subdomain_is_reserved_to_its_tenant(run, deployment):
    run(deployments.delete_deployment(deployment))
    stranger = new_deployment("another-tenant")
    stranger.subdomain = deployment.subdomain
    with pytest.raises(deployments.SubdomainReserved):
        run(deployments.create_deployment(stranger))
    assert run(deployments.get_any_deployment(stranger.id)) is None
    owner = new_deployment(deployment.tenant)
    owner.subdomain = deployment.subdomain
    assert run(deployments.create_deployment(owner)) == owner


def test_a_one_shot_key_returns_the_build_recorded_first(run, deployment):
    delivery = keys.webhook_delivery(deployment.id, "github", str(uuid.uuid4()))
    assert run(deployments.claim_once(delivery, "first")) is None
    assert run(deployments.claim_once(delivery, "second")) == "first"
    run(deployments.forget(delivery))
    assert run(deployments.claim_once(delivery, "third")) is None
    key = keys.idempotency(deployment.tenant, deployment.id, str(uuid.uuid4()))
    assert run(deployments.claim_once(key, "fourth")) is None
    assert run(deployments.claim_once(key, "fifth")) == "fourth"


def test_a_token_is_looked_up_by_its_hash_listed_and_revoked(run, redis_client):
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    token = tokens.create_token(redis_client, tenant, "ci")
    assert run(tokens.authenticate(token)) == tokens.Principal(tenant, "ci", admin=False)
    admin = tokens.create_token(redis_client, tenant, "ops", admin=True)
    assert run(tokens.authenticate(admin)) == tokens.Principal(tenant, "ops", admin=True)
    tokens.revoke_token(redis_client, admin)
    assert run(tokens.authenticate(token + "x")) is None
    [row] = [row for row in tokens.list_tokens(redis_client) if row[fields.TOKEN_TENANT] == tenant]
    assert row[fields.TOKEN_HASH] == tokens.token_hash(token) and token not in row.values()
    assert tokens.revoke_token(redis_client, token)
    assert not tokens.revoke_token(redis_client, token)
    assert run(tokens.authenticate(token)) is None
    assert tenant not in [row[fields.TOKEN_TENANT] for row in tokens.list_tokens(redis_client)]


def test_the_field_names_are_those_of_the_records():
    names = {
        value
        for name, value in vars(fields).items()
        if name.isupper() and not name.startswith(("TOKEN_", "WORKER_"))
    }
    assert names <= {*Build.__struct_fields__, *Deployment.__struct_fields__}


def commands_sent(redis_client, client_port: int | None, action) -> list[str]:
    """The commands one client connection (None: every other client) sent while `action` ran, as
    MONITOR sees them (the commands scripts ran inside Redis are not counted: they cost no
    round trip)."""
    seen: list[str] = []
    watching = threading.Event()

    def watch() -> None:
        with redis_client.monitor() as monitor:
            watching.set()
            for entry in monitor.listen():
                if entry["command"] == f"ECHO {END_OF_COUNT}":
                    return
                command = entry["command"].split()[0]
                ours = entry["client_type"] != "lua" and client_port in (None, int(entry["client_port"]))
                if ours and command not in CONNECTION_SETUP:
                    seen.append(command)

    watcher = threading.Thread(target=watch)
    watcher.start()
    watching.wait(5)
    action()
    redis_client.echo(END_OF_COUNT)
    watcher.join(5)
    return seen


@pytest.mark.parametrize("listing", ["builds", "deployments"])
def test_the_api_reads_a_page_in_one_round_trip(config, redis_client, listing):
    run = SyncRunner(redis_client).run
    deployment = run(deployments.create_deployment(new_deployment(f"t-{uuid.uuid4().hex[:12]}")))
    for _ in range(60):
        run(builds.create_build(new_build(deployment)))
    loop = asyncio.new_event_loop()
    client = aioredis.Redis.from_url(config.redis_url, single_connection_client=True)
    store = RecordStore(client)

    def read_page():
        if listing == "builds":
            return loop.run_until_complete(
                store.list_builds(deployment.tenant, deployment.id, None, 50, None)
            )
        return loop.run_until_complete(store.list_deployments(deployment.tenant, 50, None))

    read_page()  # loads the script into Redis: later pages send EVALSHA alone
    port = int(loop.run_until_complete(client.client_info())["addr"].rsplit(":", 1)[1])
    pages = []
    assert commands_sent(redis_client, port, lambda: pages.append(read_page())) == ["EVALSHA"]
    rows = pages[0][0]
    assert len(rows) == (50 if listing == "builds" else 1)
    loop.run_until_complete(client.aclose())
    loop.close()
