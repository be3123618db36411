"""The worker's adapter over the Redis data model (common.records): claim a build under a
lease, renew or release the lease, update and finish the record — every write fenced by the
attempt number of the claim. Runs the model's operations on the blocking client."""

from __future__ import annotations

import redis

from common.models import Build, BuildStatus, utc_now
from common.records import builds as build_ops
from common.records import fields
from common.records.builds import Claim, TransitionResult
from common.records.call import SyncRunner

__all__ = ["BuildRecords", "Claim", "LostClaim"]


class LostClaim(Exception):
    """Raised when a worker's write is refused because another attempt now owns the build."""


class BuildRecords:
    def __init__(self, client: redis.Redis, lease_ttl_s: float) -> None:
        self.redis = client
        self.lease_ttl_ms = int(lease_ttl_s * 1000)
        self._run = SyncRunner(client).run

    def load(self, build_id: str) -> Build | None:
        return self._run(build_ops.load(build_id))

    def now_ms(self) -> int:
        """The Redis clock, which every host shares, in milliseconds."""
        return self._run(build_ops.redis_now_ms())

    def claim(
        self, build: Build, worker_id: str, max_attempts: int, one_per_deployment: bool, queue_deadline_s: int
    ) -> Claim:
        """Claims the build under a new attempt number and a fresh lease."""
        return self._run(
            build_ops.claim(
                build,
                worker_id,
                self.lease_ttl_ms,
                max_attempts,
                one_per_deployment,
                int(queue_deadline_s * 1000),
            )
        )

    def renew(self, build: Build) -> bool:
        """Extends the lease; False once another attempt owns the build or it has ended."""
        return self._run(build_ops.renew(build, self.lease_ttl_ms))

    def release(self, build: Build) -> bool:
        """Ends the lease now, so that the next delivery takes the build over."""
        return self._run(build_ops.fenced_set(build, {fields.LEASE_EXPIRES_MS: "0"}))

    def seize(self, build: Build, worker_id: str) -> bool:
        """Takes the build from its current attempt without running it (to end it)."""
        values = {fields.ATTEMPT: str(build.attempt + 1), fields.WORKER: worker_id}
        if not self._run(build_ops.fenced_set(build, values)):
            return False
        build.attempt, build.worker = build.attempt + 1, worker_id
        return True

    def update(self, build: Build, **values: str) -> None:
        if not self._run(build_ops.fenced_set(build, values)):
            raise LostClaim(build.id)
        for name, value in values.items():
            setattr(build, name, value)

    def finish(self, build: Build, status: BuildStatus, **values: str) -> bool:
        """building → a terminal status; False if the build already ended or the claim was lost."""
        values[fields.FINISHED_AT] = utc_now()
        result = self.move(build, status, values, expected=frozenset({BuildStatus.BUILDING}), fenced=True)
        if result.ok:
            build.status = status.value
            for name, value in values.items():
                setattr(build, name, value)
        return result.ok

    def cancel_requested_by(self, build: Build) -> str | None:
        return self._run(build_ops.cancel_requested_by(build))

    def move(
        self,
        build: Build,
        to: BuildStatus,
        fields: dict[str, str],
        expected: frozenset[BuildStatus],
        fenced: bool = False,
    ) -> TransitionResult:
        attempt = build.attempt if fenced else None
        return self._run(
            build_ops.transition(
                build.id, build.deployment_id, to, fields, expected=expected, attempt=attempt
            )
        )
