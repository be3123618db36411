"""The worker's view of a build record: claim it, update it and finish it, every write fenced
by the attempt number of the claim."""

from __future__ import annotations

import redis

from common import keys
from common.models import Build, BuildStatus, LogState, utc_now
from common.transitions import TRANSITION_LUA, TransitionResult, parse_transition, transition_call

# Sets fields on a build only while the caller's claim (attempt) is still the current one.
_FENCED_HSET_LUA = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


class LostClaim(Exception):
    """Raised when a worker's write is refused because another attempt now owns the build."""


class BuildRecords:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._transition = client.register_script(TRANSITION_LUA)
        self._fenced_hset = client.register_script(_FENCED_HSET_LUA)

    def load(self, build_id: str) -> Build | None:
        raw = self.redis.hgetall(keys.build(build_id))
        return Build.from_redis(raw) if raw else None

    def claim(self, build: Build, worker_id: str) -> Build | None:
        """pending → building under a new attempt number; None if someone else got there first."""
        attempt = build.attempt + 1
        fields = {
            "started_at": utc_now(),
            "attempt": str(attempt),
            "worker": worker_id,
            "log_state": LogState.LIVE.value,
        }
        result = self._move(build, BuildStatus.BUILDING, fields, expected=frozenset({BuildStatus.PENDING}))
        if not result.ok:
            return None
        build.status, build.attempt = BuildStatus.BUILDING.value, attempt
        build.started_at, build.worker, build.log_state = fields["started_at"], worker_id, LogState.LIVE.value
        return build

    def update(self, build: Build, **fields: str) -> None:
        flat = [item for pair in fields.items() for item in pair]
        if not self._fenced_hset(keys=[keys.build(build.id)], args=[str(build.attempt), *flat]):
            raise LostClaim(build.id)
        for name, value in fields.items():
            setattr(build, name, value)

    def finish(self, build: Build, status: BuildStatus, **fields: str) -> bool:
        """building → a terminal status; False if the build already ended or the claim was lost."""
        fields["finished_at"] = utc_now()
        result = self._move(build, status, fields, expected=frozenset({BuildStatus.BUILDING}), fenced=True)
        if result.ok:
            build.status = status.value
            for name, value in fields.items():
                setattr(build, name, value)
        return result.ok

    def cancel_requested_by(self, build: Build) -> str | None:
        who = self.redis.hget(keys.build(build.id), "cancel_requested_by")
        return who.decode() if who else None

    def _move(
        self,
        build: Build,
        to: BuildStatus,
        fields: dict[str, str],
        expected: frozenset[BuildStatus],
        fenced: bool = False,
    ) -> TransitionResult:
        call_keys, argv = transition_call(
            build.id,
            build.deployment_id,
            to,
            fields,
            expected=expected,
            attempt=build.attempt if fenced else None,
        )
        return parse_transition(self._transition(keys=call_keys, args=argv))
