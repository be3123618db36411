"""Which images a build may name: the farm's registry under any name that reaches it (names
resolved by a resolver given here: no lookup leaves the machine), and no local image by id."""

import pytest

from common.outbound import OutboundRule, parse_networks
from worker.image_policy import FarmRegistry, ImageRefused, check_dockerfile, is_local, split_reference

TENANT = "tenant-b"
HOLDERS = {"b-app": TENANT, "b-old": TENANT, "a-app": "tenant-a"}
# What the test's resolver answers: loopback names, the registry's own address, and a name of
# the tenant's that points at the registry (a DNS record anyone can make).
ADDRESSES = {
    "localhost": {"127.0.0.1", "::1"},
    "registry.internal": {"10.20.0.5"},
    "alias.example": {"10.20.0.5"},
    "mirror.example": {"10.30.0.9"},
}


def resolver(host: str) -> frozenset[str]:
    if host.strip("[]").replace(".", "").isdigit() or ":" in host:
        return frozenset({host})
    return frozenset(ADDRESSES.get(host, ()))


def local(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "0.0.0.0", "::")


def outbound_resolver(host: str, port: int) -> list[str]:
    return sorted(resolver(host))


# The operator opened the internal mirror's range (BUILDFARM_OUTBOUND_ALLOW), not the registry's.
OUTBOUND = OutboundRule(parse_networks("10.30.0.0/16"), outbound_resolver)


def check(text: str, registry: str = "localhost:5000", build_args: dict[str, str] | None = None) -> int:
    farm = FarmRegistry(registry, resolver, local)
    return check_dockerfile(text, build_args or {}, TENANT, farm, HOLDERS.get, OUTBOUND)


@pytest.mark.parametrize(
    "reference",
    [
        "localhost:5000/a-app:1",
        "LOCALHOST:5000/a-app:1",
        "127.0.0.1:5000/a-app",
        "127.9.9.9:5000/a-app:latest",
        "0.0.0.0:5000/a-app",
        "[::1]:5000/a-app",
        "localhost:5000/a-app@sha256:" + "a" * 64,
        "localhost:5000/nobody:1",
        "localhost:5000/b-app/nested:1",
    ],
)
def test_another_tenants_or_nobodys_image_of_the_farm_registry_is_refused_under_any_name(reference):
    with pytest.raises(ImageRefused, match="farm's registry"):
        check(f"FROM {reference}\n")


def test_the_tenants_own_images_of_the_registry_are_allowed_live_or_tombstoned():
    assert check("FROM localhost:5000/b-app:1\nFROM 127.0.0.1:5000/b-old\n") == 2


def test_other_registries_and_docker_hub_are_not_the_farms():
    assert check("FROM busybox\nFROM mirror.example:5000/a-app\nFROM unresolved.example/x\n")


@pytest.mark.parametrize(
    "line",
    [
        "FROM localhost:5001/x",
        "FROM localhost/a-app",
        "FROM 169.254.169.254/x",
        "FROM 10.20.0.6:5000/x",
        "FROM busybox\nADD http://localhost:9191/metrics /m",
        "FROM busybox\nADD http://169.254.169.254/latest/meta-data/ /m",
        "FROM busybox\nCOPY --from=127.0.0.1:6379/x / /",
    ],
)
def test_a_registry_or_url_the_outbound_rule_refuses_is_refused_the_engine_would_reach_it_from_its_host(line):
    with pytest.raises(ImageRefused, match="an address builds may not reach"):
        check(f"{line}\n")


def test_a_registry_reached_by_another_name_resolving_to_its_address_is_the_farms():
    with pytest.raises(ImageRefused):
        check("FROM alias.example:5000/a-app\n", registry="registry.internal:5000")
    with pytest.raises(ImageRefused):
        check("FROM 10.20.0.5:5000/a-app\n", registry="registry.internal:5000")
    # A loopback address reaches a registry elsewhere only if the registry is on this host; it is
    # then not the farm's, but the engine's own host, which the outbound rule refuses.
    with pytest.raises(ImageRefused, match="an address builds may not reach"):
        check("FROM localhost:5000/a-app\n", registry="registry.internal:5000")


def test_a_registry_without_a_port_is_reached_on_443_and_80():
    with pytest.raises(ImageRefused):
        check("FROM registry.internal:443/a-app\n", registry="registry.internal")
    with pytest.raises(ImageRefused):
        check("FROM alias.example/a-app\n", registry="registry.internal")


def test_a_registry_with_a_path_prefix_holds_subdomains_under_it():
    assert check("FROM localhost:5000/farm/b-app:1\n", registry="localhost:5000/farm") == 1
    with pytest.raises(ImageRefused):
        check("FROM localhost:5000/farm/a-app:1\n", registry="localhost:5000/farm")
    with pytest.raises(ImageRefused):
        check("FROM localhost:5000/b-app:1\n", registry="localhost:5000/farm")


@pytest.mark.parametrize(
    "reference", ["7ee3", "7ee3258c06fe", "sha256:" + "7e" * 32, "7E" * 32, "sha256:7ee3258c06fe"]
)
def test_a_bare_image_id_or_id_prefix_is_refused(reference):
    with pytest.raises(ImageRefused, match="local image by its id"):
        check(f"FROM {reference}\n")


def test_copy_from_and_mount_from_are_checked_too():
    with pytest.raises(ImageRefused, match="COPY --from localhost:5000/a-app"):
        check("FROM busybox\nCOPY --from=localhost:5000/a-app /a /a\n")
    with pytest.raises(ImageRefused, match="RUN --mount from 7ee3258c06fe"):
        check("FROM busybox\nRUN --mount=type=bind,from=7ee3258c06fe,target=/x true\n")


def test_the_refusal_names_the_reference_its_line_and_why():
    with pytest.raises(ImageRefused) as refused:
        check("ARG BASE=busybox\nFROM ${BASE}\n", build_args={"BASE": "localhost:5000/a-app:1"})
    assert str(refused.value).startswith(
        "FROM localhost:5000/a-app:1 (Dockerfile line 2) is in the farm's registry"
    )


def test_an_uncheckable_substitution_is_refused_as_the_users_mistake():
    with pytest.raises(ImageRefused, match="cannot check"):
        check("FROM ${BASE/x/y}\n")


@pytest.mark.parametrize(
    "reference, expected",
    [
        ("busybox", (None, "busybox")),
        ("library/busybox:1", (None, "library/busybox")),
        ("localhost/x:1", ("localhost", "x")),
        ("Host/x", ("Host", "x")),
        ("host.example:5000/a/b:tag@sha256:00", ("host.example:5000", "a/b")),
        ("[::1]:5000/x", ("[::1]:5000", "x")),
    ],
)
def test_references_split_as_the_engine_splits_them(reference, expected):
    assert split_reference(reference) == expected


def test_loopback_unspecified_and_this_hosts_addresses_are_local():
    assert is_local("127.0.0.1") and is_local("127.8.0.1") and is_local("0.0.0.0") and is_local("::1")
    assert is_local("::ffff:127.0.0.1")
    # TEST-NET-3: never a host's address; binding to it fails, nothing is sent.
    assert not is_local("203.0.113.7")


def test_an_add_url_on_the_farm_registry_is_refused_and_elsewhere_is_not():
    with pytest.raises(
        ImageRefused, match="ADD http://127.0.0.1:5000/v2/b-app/manifests/1 .*fetch from the farm's registry"
    ):
        check("FROM busybox\nADD http://127.0.0.1:5000/v2/b-app/manifests/1 /m\n")
    with pytest.raises(ImageRefused):
        check("FROM busybox\nADD https://user:pw@LOCALHOST:5000/v2/ /m\n")
    assert check("FROM busybox\nADD https://mirror.example/x /x\n")


def test_a_frontend_of_another_tenant_is_refused():
    with pytest.raises(ImageRefused, match="# syntax= localhost:5000/a-app:1 .Dockerfile line 1."):
        check("# syntax=localhost:5000/a-app:1\nFROM busybox\n")
