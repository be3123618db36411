"""The worker's view of a build record: claim it under a lease, renew or release the lease,
update and finish the record — every write fenced by the attempt number of the claim."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from common import keys
from common.models import Build, BuildStatus, LogState, utc_now
from common.transitions import TRANSITION_LUA, TransitionResult, parse_transition, transition_call

# Claims a pending build, or takes over a building one whose lease expired. Refuses a build
# held under a live lease, one that ran out of attempts, a build waiting behind an older or
# running build of its deployment (when builds of a deployment run one at a time), and a
# pending build past the queue deadline. Times come from the Redis clock, shared by all hosts.
_CLAIM_LUA = """
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0') or 0
local id = redis.call('HGET', KEYS[1], 'id')
if status == 'building' then
  local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_expires_ms') or '0') or 0
  if lease > ms then return {'held'} end
  if attempt >= tonumber(ARGV[3]) then return {'exhausted'} end
elseif status == 'pending' then
  local queued = redis.call('ZSCORE', KEYS[3] .. 'pending', id)
  if queued and tonumber(ARGV[5]) > 0 and ms - tonumber(queued) > tonumber(ARGV[5]) then
    return {'expired'}
  end
else
  return {'terminal'}
end
if ARGV[4] == '1' then
  local number = tonumber(redis.call('HGET', KEYS[1], 'number'))
  local older = redis.call('ZRANGE', KEYS[2] .. ':pending', 0, 0, 'WITHSCORES')
  if older[1] and older[1] ~= id and tonumber(older[2]) < number then return {'busy'} end
  for _, other in ipairs(redis.call('ZRANGE', KEYS[2] .. ':building', 0, -1)) do
    if other ~= id then
      local lease = tonumber(redis.call('HGET', ARGV[6] .. other, 'lease_expires_ms') or '0') or 0
      if lease > ms then return {'busy'} end
    end
  end
end
local previous_worker = redis.call('HGET', KEYS[1], 'worker') or ''
redis.call('HSET', KEYS[1], 'attempt', attempt + 1, 'worker', ARGV[1],
  'lease_expires_ms', ms + tonumber(ARGV[2]), 'log_state', 'live')
if status == 'pending' then
  redis.call('HSET', KEYS[1], 'status', 'building', 'started_at', ARGV[7])
  redis.call('ZREM', KEYS[2] .. ':pending', id)
  redis.call('ZADD', KEYS[2] .. ':building', redis.call('HGET', KEYS[1], 'number'), id)
  redis.call('ZREM', KEYS[3] .. 'pending', id)
  redis.call('ZADD', KEYS[3] .. 'building', ms, id)
end
return {'claimed', tostring(attempt + 1), status, previous_worker}
"""

# Extends the lease while the caller's attempt still owns the running build.
_RENEW_LUA = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'building' then return 0 end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'lease_expires_ms', now[1] * 1000 + math.floor(now[2] / 1000) + tonumber(ARGV[2]))
return 1
"""

# Sets fields on a build only while the caller's claim (attempt) is still the current one.
_FENCED_HSET_LUA = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
return 1
"""


class LostClaim(Exception):
    """Raised when a worker's write is refused because another attempt now owns the build."""


@dataclass(frozen=True)
class Claim:
    """The outcome of a claim: `claimed`, or why not (held, busy, expired, terminal, …)."""

    outcome: str
    attempt: int = 0
    took_over_from: str | None = None


class BuildRecords:
    def __init__(self, client: redis.Redis, lease_ttl_s: float) -> None:
        self.redis = client
        self.lease_ttl_ms = int(lease_ttl_s * 1000)
        self._transition = client.register_script(TRANSITION_LUA)
        self._claim = client.register_script(_CLAIM_LUA)
        self._renew = client.register_script(_RENEW_LUA)
        self._fenced_hset = client.register_script(_FENCED_HSET_LUA)

    def load(self, build_id: str) -> Build | None:
        raw = self.redis.hgetall(keys.build(build_id))
        return Build.from_redis(raw) if raw else None

    def claim(
        self, build: Build, worker_id: str, max_attempts: int, one_per_deployment: bool, queue_deadline_s: int
    ) -> Claim:
        """Claims the build under a new attempt number and a fresh lease."""
        raw = self._claim(
            keys=[keys.build(build.id), keys.deployment_builds(build.deployment_id), keys.active_builds()],
            args=[
                worker_id,
                self.lease_ttl_ms,
                max_attempts,
                "1" if one_per_deployment else "0",
                int(queue_deadline_s * 1000),
                keys.BUILD_PREFIX,
                utc_now(),
            ],
        )
        outcome = raw[0].decode()
        if outcome != "claimed":
            return Claim(outcome)
        attempt, previous_status, previous_worker = int(raw[1]), raw[2].decode(), raw[3].decode()
        build.status, build.attempt, build.worker = BuildStatus.BUILDING.value, attempt, worker_id
        build.log_state = LogState.LIVE.value
        took_over = previous_worker if previous_status == BuildStatus.BUILDING else None
        return Claim(outcome, attempt, took_over)

    def renew(self, build: Build) -> bool:
        """Extends the lease; False once another attempt owns the build or it has ended."""
        return bool(self._renew(keys=[keys.build(build.id)], args=[str(build.attempt), self.lease_ttl_ms]))

    def release(self, build: Build) -> bool:
        """Ends the lease now, so that the next delivery takes the build over."""
        return self._fenced(build, {"lease_expires_ms": "0"})

    def seize(self, build: Build, worker_id: str) -> bool:
        """Takes the build from its current attempt without running it (to end it)."""
        if not self._fenced(build, {"attempt": str(build.attempt + 1), "worker": worker_id}):
            return False
        build.attempt, build.worker = build.attempt + 1, worker_id
        return True

    def update(self, build: Build, **fields: str) -> None:
        if not self._fenced(build, fields):
            raise LostClaim(build.id)
        for name, value in fields.items():
            setattr(build, name, value)

    def finish(self, build: Build, status: BuildStatus, **fields: str) -> bool:
        """building → a terminal status; False if the build already ended or the claim was lost."""
        fields["finished_at"] = utc_now()
        result = self.move(build, status, fields, expected=frozenset({BuildStatus.BUILDING}), fenced=True)
        if result.ok:
            build.status = status.value
            for name, value in fields.items():
                setattr(build, name, value)
        return result.ok

    def cancel_requested_by(self, build: Build) -> str | None:
        who = self.redis.hget(keys.build(build.id), "cancel_requested_by")
        return who.decode() if who else None

    def move(
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

    def _fenced(self, build: Build, fields: dict[str, str]) -> bool:
        flat = [item for pair in fields.items() for item in pair]
        return bool(self._fenced_hset(keys=[keys.build(build.id)], args=[str(build.attempt), *flat]))
