"""Checks deploy/'s files against the published schemas, offline: the Kubernetes manifests with
PyPI's kubernetes-validate (the API's OpenAPI schemas, strict: an unknown field is an error) and
the compose file, after compose's own variable interpolation, with the compose-spec schema that
PyPI's check-jsonschema ships (vendor/compose-spec.json, from the compose-spec repository through
SchemaStore; its version is the check-jsonschema pinned in pyproject.toml).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

import jsonschema
import kubernetes_validate

# The oldest Kubernetes the manifests support (native sidecars, deploy/k8s/kustomization.yaml)
# and the newest kubernetes-validate knows: a field removed or added in between fails one of them.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
# Custom resources, which no Kubernetes schema describes (KEDA's CRDs are not shipped offline).
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication")}

# compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
# ${VAR?error}, ${VAR:+other}, ${VAR+other}.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


class InterpolationError(ValueError):
    """Raised where compose stops: a ${VAR:?message} whose variable is unset (or empty)."""


def k8s_schema_error(resource: dict[str, Any], version: str) -> str | None:
    """Why the resource does not fit Kubernetes `version`'s schema, or None when it does."""
    if (resource["apiVersion"], resource["kind"]) in CUSTOM_KINDS:
        return None
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path)
        return f"{resource['kind']} {resource['metadata'].get('name')}: {where}: {e.message}"
    except kubernetes_validate.SchemaNotFoundError as e:
        return e.message
    return None


def compose_schema() -> dict[str, Any]:
    schema = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(schema.read_text())


def compose_schema_errors(project: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_schema())
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator.iter_errors(project)
    ]


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """The compose file's text as compose reads it with these variables."""

    def value(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"] or "", match["arg"] or ""
        given = env.get(name)
        present = given is not None and (given != "" or not op.startswith(":"))
        if op.endswith("-"):
            return given if present else arg
        if op.endswith("?"):
            if not present:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return given
        if op.endswith("+"):
            return arg if present else ""
        return given or ""

    return _VARIABLE.sub(value, text)


def compose_variables(text: str) -> set[str]:
    """Every variable the compose file reads."""
    return {m["braced"] or m["bare"] for m in _VARIABLE.finditer(text) if not m["escaped"]}
