"""A tenant's limits: an admin sets them straight in Redis (`buildfarm tenant`), over the farm's
defaults; what is set is what the API and the workers read next, with no restart."""

import pytest

from cli.main import main as buildfarm
from common.config import Config
from common.records import keys
from common.tenant_limits import farm_defaults, tenant_limits
from tests.conftest import unique_subdomain


def limits(run, tenant: str, config: Config | None = None):
    return run(tenant_limits(tenant, farm_defaults(config or Config())))


def test_a_tenant_without_limits_of_its_own_has_the_farms_defaults(run):
    config = Config(tenant_max_running=3, tenant_max_queued=7)
    got = limits(run, f"t-{unique_subdomain()}", config)
    assert (got.max_running, got.max_queued) == (3, 7)
    assert got.max_uploads == Config().tenant_max_uploads


def test_an_admin_sets_limits_that_are_read_next_and_puts_them_back_to_the_default(run, capsys):
    tenant = f"t-{unique_subdomain()}"
    # When an admin sets two limits
    assert buildfarm(["tenant", "set", tenant, "--max-running", "4", "--max-queued", "100"]) == 0
    shown = capsys.readouterr().out
    # Then they are in force at once, the others stay the farm's, and `show` says which is which
    got = limits(run, tenant)
    assert (got.max_running, got.max_queued) == (4, 100)
    assert got.deploys_per_minute == Config().tenant_deploys_per_minute
    assert "max_running\t4\t(set)" in shown
    assert f"deploys_per_minute\t{Config().tenant_deploys_per_minute}\t(farm default)" in shown
    # And `list` names the tenant with its own limits only
    assert buildfarm(["tenant", "list"]) == 0
    assert f"{tenant}\tmax_running=4 max_queued=100" in capsys.readouterr().out.splitlines()
    # When one is put back to the default and another set to 0 (no limit)
    assert buildfarm(["tenant", "set", tenant, "--max-running", "default", "--max-uploads", "0"]) == 0
    got = limits(run, tenant)
    assert (got.max_running, got.max_queued, got.max_uploads) == (Config().tenant_max_running, 100, 0)
    assert "max_uploads\tno limit\t(set)" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["--max-running", "-1"], ["--max-queued", "lots"]])
def test_a_bad_limit_is_refused_and_nothing_is_written(bad, redis_client, capsys):
    tenant = f"t-{unique_subdomain()}"
    with pytest.raises(SystemExit) as refused:
        buildfarm(["tenant", "set", tenant, *bad])
    assert refused.value.code == 2
    assert "a whole number (0: no limit) or 'default'" in capsys.readouterr().err
    assert not redis_client.exists(keys.tenant_limits(tenant))


def test_a_set_without_any_limit_is_refused_and_nothing_is_written(redis_client, capsys):
    tenant = f"t-{unique_subdomain()}"
    assert buildfarm(["tenant", "set", tenant]) == 2
    assert "give at least one limit" in capsys.readouterr().err
    assert not redis_client.sismember(keys.TENANTS_WITH_LIMITS, tenant)
