"""Compare-and-set status transitions of a build, in one Redis round trip (a Lua script).

The script is the only writer of a build's `status`. It checks the current status against
the allowed predecessors, and, when the caller is a worker, that the caller still holds the
build's claim (its attempt number) — a worker that lost its claim cannot overwrite the
record (fencing). It also moves the build between the per-status sorted sets that make
`?status=` listing O(page), and between the farm-wide sets of pending and building builds
that the reaper scans.
"""

from __future__ import annotations

from dataclasses import dataclass

from common import keys
from common.models import ALLOWED_TRANSITIONS, BuildStatus

TRANSITION_LUA = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {-1, ''} end
local allowed = false
for from in string.gmatch(ARGV[1], '[^,]+') do
  if from == current then allowed = true end
end
if not allowed then return {0, current} end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[3] then
  return {-2, current}
end
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if ARGV[2] ~= current then
  local id = redis.call('HGET', KEYS[1], 'id')
  redis.call('ZREM', KEYS[2] .. ':' .. current, id)
  redis.call('ZADD', KEYS[2] .. ':' .. ARGV[2], redis.call('HGET', KEYS[1], 'number'), id)
  local now = redis.call('TIME')
  local ms = now[1] * 1000 + math.floor(now[2] / 1000)
  if current == 'pending' or current == 'building' then redis.call('ZREM', KEYS[3] .. current, id) end
  if ARGV[2] == 'pending' or ARGV[2] == 'building' then redis.call('ZADD', KEYS[3] .. ARGV[2], ms, id) end
end
return {1, current}
"""


@dataclass(frozen=True)
class TransitionResult:
    ok: bool
    # The status before the call: the one replaced on success, the one kept on refusal.
    previous: str | None
    reason: str = ""


def transition_call(
    build_id: str,
    deployment_id: str,
    to: BuildStatus,
    fields: dict[str, str] | None = None,
    *,
    expected: frozenset[BuildStatus] | None = None,
    attempt: int | None = None,
) -> tuple[list[str], list[str]]:
    """KEYS and ARGV for TRANSITION_LUA: move the build to `to` with `fields` set."""
    sources = [s for s, targets in ALLOWED_TRANSITIONS.items() if to in targets]
    if expected is not None:
        sources = [s for s in sources if s in expected]
    argv = [",".join(sources), to.value, "" if attempt is None else str(attempt)]
    argv += ["status", to.value]
    for name, value in (fields or {}).items():
        argv += [name, value]
    return [keys.build(build_id), keys.deployment_builds(deployment_id), keys.active_builds()], argv


def parse_transition(raw: list) -> TransitionResult:
    code, previous = int(raw[0]), raw[1]
    previous = previous.decode() if isinstance(previous, bytes) else previous
    if code == 1:
        return TransitionResult(True, previous)
    if code == -1:
        return TransitionResult(False, None, "not_found")
    if code == -2:
        return TransitionResult(False, previous, "fenced")
    return TransitionResult(False, previous, "invalid_transition")
