"""The worker's adapter over the Redis data model (common.records): runs the operations on build
records (claim under a lease, renew or release it, update and finish the record, every write
fenced by the claim's attempt number), reads a deployment's build secrets, its integrations
and who holds a subdomain, and accrues a tenant's build time, each as a method of its name, on the
blocking client."""

from __future__ import annotations

from common.records import builds, deployments, integrations, secrets, subdomains, usage
from common.records.call import SyncRunner


class BuildRecords(SyncRunner):
    modules = (builds, secrets, subdomains, usage, deployments, integrations)
