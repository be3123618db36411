"""A deleted deployment's subdomain stays reserved to its tenant (a tombstone): another tenant
gets the API's conflict error, the same tenant takes it again, an admin frees it."""

import pytest

from cli.main import main as buildfarm
from common.records import keys
from common.records.call import SyncRunner
from common.records.subdomains import subdomain_holder
from common.tokens import create_token
from tests.conftest import unique_subdomain

pytestmark = pytest.mark.in_process


def create(client, subdomain: str, **headers):
    body = {"name": "app", "subdomain": subdomain, "source_type": "archive"}
    return client.post("/deployments", json=body, **headers)


def created_and_deleted(client) -> str:
    subdomain = unique_subdomain()
    deployment = create(client, subdomain)
    assert deployment.status_code == 201, deployment.text
    assert client.delete(f"/deployments/{deployment.json()['id']}").status_code == 204
    return subdomain


def stranger(redis_client) -> dict[str, dict[str, str]]:
    token = create_token(redis_client, f"stranger-{unique_subdomain()}", "tests")
    return {"headers": {"Authorization": f"Bearer {token}"}}


def test_another_tenant_cannot_take_a_deleted_deployments_subdomain(client, redis_client, tenant_token):
    # Given a deployment created and deleted by one tenant
    subdomain = created_and_deleted(client)
    # When another tenant asks for its subdomain
    refused = create(client, subdomain, **stranger(redis_client))
    # Then it gets the standard conflict error, saying why
    assert refused.status_code == 409
    body = refused.json()
    assert body["error"] == "conflict"
    assert body["message"].startswith(f"Subdomain '{subdomain}' is reserved: a deleted deployment used it")
    # And the subdomain is still the first tenant's
    assert SyncRunner(redis_client).run(subdomain_holder(subdomain)) == tenant_token[0]


def test_the_same_tenant_takes_its_subdomain_again_and_a_new_delete_reserves_it_again(client, redis_client):
    subdomain = created_and_deleted(client)
    again = create(client, subdomain)
    assert again.status_code == 201, again.text
    assert not redis_client.exists(keys.subdomain_tombstone(subdomain))
    assert client.delete(f"/deployments/{again.json()['id']}").status_code == 204
    assert create(client, subdomain, **stranger(redis_client)).status_code == 409


def test_an_admin_frees_a_tombstone_and_then_any_tenant_may_take_the_subdomain(
    client, redis_client, tenant_token, capsys
):
    subdomain = created_and_deleted(client)
    # When an admin frees it (the CLI, straight in Redis, like `buildfarm token`)
    assert buildfarm(["subdomain", "free", subdomain]) == 0
    assert f"reserved to tenant {tenant_token[0]}" in capsys.readouterr().out
    # Then another tenant takes it
    assert create(client, subdomain, **stranger(redis_client)).status_code == 201
    # And freeing a subdomain without a tombstone says so
    assert buildfarm(["subdomain", "free", subdomain]) == 1
    assert "has no tombstone" in capsys.readouterr().err


def test_a_live_subdomain_is_held_by_its_deployments_tenant_and_an_unknown_one_by_nobody(
    client, redis_client, tenant_token
):
    subdomain = unique_subdomain()
    assert create(client, subdomain).status_code == 201
    runner = SyncRunner(redis_client)
    assert runner.run(subdomain_holder(subdomain)) == tenant_token[0]
    assert runner.run(subdomain_holder(unique_subdomain())) is None
