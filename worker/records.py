"""The worker's adapter over the Redis data model (common.records): runs the model's operations
that the worker calls (claim a build under a lease, renew or release it, update and finish the
record, every write fenced by the claim's attempt number), each as a method of its name, on the
blocking client. It holds no rules."""

from __future__ import annotations

from common.records import builds
from common.records.call import SyncRunner


class BuildRecords(SyncRunner):
    operations = (
        builds.load,
        builds.now_ms,
        builds.claim,
        builds.renew,
        builds.release,
        builds.seize,
        builds.update,
        builds.finish,
        builds.cancel_requested_by,
        builds.transition,
    )
