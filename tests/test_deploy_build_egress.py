"""Every engine the deployment files start filters its builds (deploy/build-egress), and k8s adds a
NetworkPolicy: the compose and k8s dind engines start through the script, get it where they run
it, wait for its rules before a worker may use them, and the policy opens the worker pod exactly
what it needs and refuses the ranges the script refuses. No service is needed: the files are
read and checked against each other (deploy/local/services is covered by
tests/test_hostile_network.py, which runs it)."""

from __future__ import annotations

import re
import shlex

from tests.test_deploy_manifests import (
    DEPLOY,
    WORKER_DOCKERFILE,
    compose,
    compose_env,
    container,
    container_env,
    dockerfile,
    final_stage,
    k8s_one,
    k8s_resources,
    pod_spec,
)

EGRESS = DEPLOY / "build-egress"
SETTINGS = {"BUILDFARM_BUILD_EGRESS", "BUILDFARM_BUILD_EGRESS_ALLOW"}


def refused_ranges() -> list[str]:
    """The non-public ranges deploy/build-egress refuses to builds."""
    (ranges,) = re.findall(r'^REFUSED="([^"]*)"', EGRESS.read_text(), re.MULTILINE)
    return ranges.split()


def test_the_compose_engine_starts_through_build_egress_and_is_healthy_only_with_its_rules():
    dind = compose()["services"]["dind"]
    assert dind["entrypoint"][1:] == ["/opt/buildfarm/build-egress", "engine"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in dind["volumes"]}
    assert (DEPLOY / mounts["/opt/buildfarm/build-egress"]).resolve() == EGRESS.resolve()
    assert "build-egress check" in " ".join(dind["healthcheck"]["test"])
    assert compose_env(dind).keys() >= SETTINGS


def test_each_k8s_engine_starts_through_build_egress_copied_from_the_worker_image():
    worker = k8s_one("Deployment", "buildfarm-worker")
    init = pod_spec(worker)["initContainers"]
    dind, copy = container(worker, "dind"), container(worker, "build-egress")
    # The copy runs to its end before the engine's container starts.
    assert init.index(copy) < init.index(dind) and "restartPolicy" not in copy
    assert copy["image"] == container(worker, "worker")["image"]
    _, source, target = copy["command"]
    copied_in_image = [
        shlex.split(rest) for word, rest in final_stage(dockerfile(WORKER_DOCKERFILE)) if word == "COPY"
    ]
    assert ["deploy/build-egress", source] in copied_in_image
    # The engine's container runs the copy, from the same volume.
    (volume,) = [m for m in copy["volumeMounts"] if target.startswith(m["mountPath"] + "/")]
    (mounted,) = [m for m in dind["volumeMounts"] if m["name"] == volume["name"]]
    assert dind["command"] == [
        "sh",
        mounted["mountPath"] + target.removeprefix(volume["mountPath"]),
        "engine",
    ]
    assert "build-egress check" in " ".join(dind["startupProbe"]["exec"]["command"])
    assert container_env(worker, dind).keys() >= SETTINGS


def test_the_k8s_network_policy_opens_the_worker_pod_its_services_dns_and_the_public_internet_only():
    policy = k8s_one("NetworkPolicy", "buildfarm-worker-egress")["spec"]
    worker = k8s_one("Deployment", "buildfarm-worker")
    assert (
        policy["podSelector"]["matchLabels"].items()
        <= worker["spec"]["template"]["metadata"]["labels"].items()
    )
    assert policy["policyTypes"] == ["Egress"]
    rules = policy["egress"]
    # Each service of the farm, on the port its pods listen on.
    for name in ("redis", "minio", "registry"):
        workload = k8s_one("StatefulSet", name)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        ports = {p["containerPort"] for c in pod_spec(workload)["containers"] for p in c.get("ports", [])}
        (rule,) = [
            r
            for r in rules
            if "podSelector" in r["to"][0]
            and "namespaceSelector" not in r["to"][0]
            and r["to"][0]["podSelector"]["matchLabels"].items() <= labels.items()
        ]
        assert {p["port"] for p in rule["ports"]} <= ports, name
    (dns,) = [r for r in rules if "namespaceSelector" in r["to"][0]]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    (public,) = [r for r in rules if "ipBlock" in r["to"][0]]
    assert "ports" not in public
    assert public["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert public["to"][0]["ipBlock"]["except"] == refused_ranges()
    assert len(rules) == 5, "an egress rule this test does not know"
    assert sum(d["kind"] == "NetworkPolicy" for d in k8s_resources()) == 1
