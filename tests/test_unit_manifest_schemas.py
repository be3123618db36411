"""The schema checks of deploy/ (tests/manifest_schemas.py) can fail: a broken manifest or
compose file is reported, and compose's interpolation is read as compose reads it."""

from __future__ import annotations

import copy

import pytest

from tests.manifest_schemas import (
    K8S_VERSIONS,
    InterpolationError,
    compose_schema_errors,
    compose_variables,
    interpolate,
    k8s_schema_error,
)

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "app", "namespace": "buildfarm"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "app"}},
        "template": {
            "metadata": {"labels": {"app": "app"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]},
        },
    },
}
COMPOSE = {"services": {"app": {"image": "app:1", "mem_limit": "1g", "pids_limit": 100}}}


def app(d: dict) -> dict:
    return d["spec"]["template"]["spec"]["containers"][0]


def broken(document: dict, change) -> dict:
    copied = copy.deepcopy(document)
    change(copied)
    return copied


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_a_well_formed_k8s_manifest_passes(version):
    assert k8s_schema_error(DEPLOYMENT, version) is None


@pytest.mark.parametrize(
    ("change", "said"),
    [
        # A misspelt field: strict schemas refuse what Kubernetes would silently drop.
        (
            lambda d: app(d).update(imagePullPolicyy="Always"),
            "imagePullPolicyy",
        ),
        (lambda d: d["spec"].update(replicas="two"), "'two' is not of type 'integer'"),
        (
            lambda d: app(d).pop("name"),
            "'name' is a required property",
        ),
        (lambda d: d.update(kind="Deploymnet"), "Couldn't find schema for kind Deploymnet"),
    ],
)
def test_a_broken_k8s_manifest_is_reported(change, said):
    error = k8s_schema_error(broken(DEPLOYMENT, change), K8S_VERSIONS[-1])
    assert error is not None and said in error


def test_a_native_sidecar_is_refused_by_kubernetes_before_it_existed():
    # The manifests are checked against the oldest version they claim (1.29), where
    # initContainers[].restartPolicy exists; 1.27 had no such field.
    sidecar = {"name": "engine", "image": "docker:28-dind", "restartPolicy": "Always"}
    manifest = broken(DEPLOYMENT, lambda d: d["spec"]["template"]["spec"].update(initContainers=[sidecar]))
    assert k8s_schema_error(manifest, "1.29") is None
    assert "restartPolicy" in k8s_schema_error(manifest, "1.27")


def test_a_well_formed_compose_file_passes():
    assert compose_schema_errors(COMPOSE) == []


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda c: c["services"]["app"].update(privilegd=True), "'privilegd' was unexpected"),
        (lambda c: c["services"]["app"].update(mem_limit=["1g"]), "mem_limit"),
        (lambda c: c.update(volumes=[]), "volumes"),
    ],
)
def test_a_broken_compose_file_is_reported(change, said):
    errors = compose_schema_errors(broken(COMPOSE, change))
    assert errors and said in " ".join(errors)


def test_interpolation_reads_defaults_alternatives_and_escapes_as_compose_does():
    text = "a=${A:-da} b=${B-db} c=${C:+on} d=$D e=$${E} f=${F}"
    assert interpolate(text, {"A": "", "B": "", "C": "x", "D": "4"}) == "a=da b= c=on d=4 e=${E} f="
    assert interpolate(text, {}) == "a=da b=db c= d= e=${E} f="
    assert compose_variables(text) == {"A", "B", "C", "D", "F"}


def test_a_required_variable_unset_or_empty_stops_interpolation_with_its_message():
    with pytest.raises(InterpolationError, match="SECRET is missing a value: set it"):
        interpolate("x: ${SECRET:?set it}", {})
    with pytest.raises(InterpolationError, match="SECRET"):
        interpolate("x: ${SECRET:?set it}", {"SECRET": ""})
    assert interpolate("x: ${SECRET?set it}", {"SECRET": ""}) == "x: "
    assert interpolate("x: ${SECRET:?set it}", {"SECRET": "s3cr3t"}) == "x: s3cr3t"
