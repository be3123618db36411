"""What a request names, looked up for its tenant: a deployment, a build of it (a page of its
builds: api/build_pages.py). Another tenant's deployment is answered exactly like a missing
one (404), and so is an id that is not a UUID."""

from __future__ import annotations

from api.errors import not_found
from api.store import RecordStore
from api.validation import is_uuid
from common.models import Build, Deployment


async def find_deployment(store: RecordStore, tenant: str, deployment_id: str) -> Deployment:
    deployment = await store.get_deployment(tenant, deployment_id) if is_uuid(deployment_id) else None
    if deployment is None:
        raise not_found("Deployment not found")
    return deployment


async def find_build(store: RecordStore, tenant: str, deployment_id: str, build_id: str) -> Build:
    """In one round trip when it exists: the build names its deployment and tenant."""
    build = await store.load(build_id) if is_uuid(build_id) else None
    return await owned_build(store, tenant, deployment_id, build)


async def owned_build(store: RecordStore, tenant: str, deployment_id: str, build: Build | None) -> Build:
    """A build read already (None: missing), if it is of the tenant's deployment; else 404."""
    if build is None or build.deployment_id != deployment_id or build.tenant != tenant:
        await find_deployment(store, tenant, deployment_id)  # which of the two is missing
        raise not_found("Build not found")
    return build
