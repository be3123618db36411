"""Every Lua script of the farm, each written once and assembled from the fragments they
share: Redis time in milliseconds, the fence check of a worker's claim, and the one writer
of a build's status and of the sorted sets indexed by it.

A script touches the keys it is given in KEYS (the Redis Cluster rule), with the exceptions
said where they are: scripts that read other records by an id found inside the script."""

from __future__ import annotations

from string import Template

from common.contract import Build
from common.models import BuildStatus
from common.records import fields
from common.records.keys import ACTIVE_STATUSES

# How far back the farm counts the builds that ended (keys.FINISHED_BUILDS): an hour.
FINISHED_WINDOW_MS = 3600 * 1000

_NOW_MS = """
local function now_ms()
  local now = redis.call('TIME')
  return now[1] * 1000 + math.floor(now[2] / 1000)
end
"""

# A worker's write counts only while its attempt number is still the build's: a worker that
# lost its claim (a takeover or the reaper bumped the attempt) is fenced out.
_HOLDS_CLAIM = """
local function holds_claim(build, attempt)
  return redis.call('HGET', build, '$attempt') == attempt
end
"""

# Scripts that change a build's status take STATUS_KEYS: KEYS[1] the build's hash, then its
# deployment's per-status sets (BuildStatus order), then the farm-wide active sets, then the
# farm-wide set of the builds that ended within the last hour (GET /farm's builds per minute).
_SET_STATUS = Template("""
local BY_STATUS = {$by_status}
local ACTIVE = {$active}
local FINISHED = $finished
local function set_status(id, number, from, to, ms)
  redis.call('HSET', KEYS[1], '$$status', to)
  if from then
    redis.call('ZREM', KEYS[BY_STATUS[from]], id)
    if ACTIVE[from] then redis.call('ZREM', KEYS[ACTIVE[from]], id) end
  end
  redis.call('ZADD', KEYS[BY_STATUS[to]], number, id)
  if ACTIVE[to] then redis.call('ZADD', KEYS[ACTIVE[to]], ms, id) end
  if not ACTIVE[to] then
    redis.call('ZADD', KEYS[FINISHED], ms, id)
    redis.call('ZREMRANGEBYSCORE', KEYS[FINISHED], '-inf', ms - $window_ms)
  end
end
""").substitute(
    by_status=", ".join(f"{status} = {slot}" for slot, status in enumerate(BuildStatus, start=2)),
    active=", ".join(
        f"{status} = {slot}" for slot, status in enumerate(ACTIVE_STATUSES, start=2 + len(BuildStatus))
    ),
    finished=2 + len(BuildStatus) + len(ACTIVE_STATUSES),
    window_ms=FINISHED_WINDOW_MS,
)
STATUS_KEY_COUNT = 2 + len(BuildStatus) + len(ACTIVE_STATUSES)


def _script(*parts: str) -> str:
    """Joins fragments and a body; `$name` stands for the hash field `fields.NAME`."""
    names = {name.lower(): value for name, value in vars(fields).items() if name.isupper()}
    return Template("".join(parts)).substitute(names)


# Compare-and-set of a build's status. ARGV: the allowed current statuses (comma-separated),
# the new status, the caller's attempt ('' for a caller that holds no claim), then field pairs.
TRANSITION = _script(
    _NOW_MS,
    _HOLDS_CLAIM,
    _SET_STATUS,
    """
local current = redis.call('HGET', KEYS[1], '$status')
if not current then return {-1, ''} end
local allowed = false
for from in string.gmatch(ARGV[1], '[^,]+') do
  if from == current then allowed = true end
end
if not allowed then return {0, current} end
if ARGV[3] ~= '' and not holds_claim(KEYS[1], ARGV[3]) then return {-2, current} end
if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
local id, number = redis.call('HGET', KEYS[1], '$id'), redis.call('HGET', KEYS[1], '$number')
set_status(id, number, current, ARGV[2], now_ms())
return {1, current}
""",
)

# Claims a pending build, or takes over a building one whose lease expired. Refuses a build
# held under a live lease, one that ran out of attempts, a build waiting behind an older or
# running build of its deployment (when builds of a deployment run one at a time), and a
# pending build past the queue deadline. Times come from the Redis clock, shared by all hosts.
# ARGV: worker, lease (ms), max attempts, one per deployment ('1'), queue deadline (ms, 0:
# none), the build key prefix, started_at.
CLAIM = _script(
    _NOW_MS,
    _SET_STATUS,
    """
local ms = now_ms()
local status = redis.call('HGET', KEYS[1], '$status')
if not status then return {'missing'} end
local attempt = tonumber(redis.call('HGET', KEYS[1], '$attempt') or '0') or 0
local id = redis.call('HGET', KEYS[1], '$id')
if status == 'building' then
  local lease = tonumber(redis.call('HGET', KEYS[1], '$lease_expires_ms') or '0') or 0
  if lease > ms then return {'held'} end
  if attempt >= tonumber(ARGV[3]) then return {'exhausted'} end
elseif status == 'pending' then
  local queued = redis.call('ZSCORE', KEYS[ACTIVE.pending], id)
  if queued and tonumber(ARGV[5]) > 0 and ms - tonumber(queued) > tonumber(ARGV[5]) then
    return {'expired'}
  end
else
  return {'terminal'}
end
if ARGV[4] == '1' then
  local number = tonumber(redis.call('HGET', KEYS[1], '$number'))
  local older = redis.call('ZRANGE', KEYS[BY_STATUS.pending], 0, 0, 'WITHSCORES')
  if older[1] and older[1] ~= id and tonumber(older[2]) < number then return {'busy'} end
  -- The other running builds are known only here, read in the same atomic step as their
  -- leases, so their hashes are named from their ids (on Redis Cluster a deployment's keys
  -- would need one hash tag).
  for _, other in ipairs(redis.call('ZRANGE', KEYS[BY_STATUS.building], 0, -1)) do
    if other ~= id then
      local lease = tonumber(redis.call('HGET', ARGV[6] .. other, '$lease_expires_ms') or '0') or 0
      if lease > ms then return {'busy'} end
    end
  end
end
local previous_worker = redis.call('HGET', KEYS[1], '$worker') or ''
redis.call('HSET', KEYS[1], '$attempt', attempt + 1, '$worker', ARGV[1],
  '$lease_expires_ms', ms + tonumber(ARGV[2]), '$log_state', 'live')
if status == 'pending' then
  redis.call('HSET', KEYS[1], '$started_at', ARGV[7])
  set_status(id, redis.call('HGET', KEYS[1], '$number'), status, 'building', ms)
end
return {'claimed', tostring(attempt + 1), status, previous_worker}
""",
)

# Stores a new build only if its deployment still exists, numbering it in the same step.
# KEYS: STATUS_KEYS, the deployment, its build counter, its set of all builds.
# ARGV: id, the deployment's new updated_at, the build's status, then the build's field pairs.
CREATE_BUILD = _script(
    _NOW_MS,
    _SET_STATUS,
    f"""
local deployment = KEYS[{STATUS_KEY_COUNT + 1}]
local seq, all_builds = KEYS[{STATUS_KEY_COUNT + 2}], KEYS[{STATUS_KEY_COUNT + 3}]
if redis.call('EXISTS', deployment) == 0 then return 0 end
local n = redis.call('INCR', seq)
redis.call('HSET', KEYS[1], '$number', n, unpack(ARGV, 4))
redis.call('ZADD', all_builds, n, ARGV[1])
set_status(ARGV[1], n, false, ARGV[3], now_ms())
redis.call('HSET', deployment, '$latest_build_id', ARGV[1], '$updated_at', ARGV[2])
return n
""",
)

RENEW = _script(
    _NOW_MS,
    _HOLDS_CLAIM,
    """
if not holds_claim(KEYS[1], ARGV[1]) then return 0 end
if redis.call('HGET', KEYS[1], '$status') ~= 'building' then return 0 end
redis.call('HSET', KEYS[1], '$lease_expires_ms', now_ms() + tonumber(ARGV[2]))
return 1
""",
)

FENCED_HSET = _script(
    _HOLDS_CLAIM,
    """
if not holds_claim(KEYS[1], ARGV[1]) then return 0 end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
return 1
""",
)

# Appends a batch of (id, line) entries to a build's log stream (KEYS[2]) only while the
# writer's attempt owns the build. ARGV: attempt, the entry field, then (id, text) pairs.
APPEND_LOG = _script(
    _HOLDS_CLAIM,
    """
if not holds_claim(KEYS[1], ARGV[1]) then return -1 end
for i = 3, #ARGV, 2 do
  redis.call('XADD', KEYS[2], ARGV[i], ARGV[2], ARGV[i + 1])
end
return (#ARGV - 2) / 2
""",
)

# Creates a deployment only if its subdomain is free (subdomains are unique farm-wide) and not
# reserved to another tenant by a tombstone; the tenant's own tombstone goes. Replies 1, or 0
# (taken), or -1 (another tenant's tombstone).
# KEYS: the subdomain, the deployment counter, the deployment, its tenant's deployments, the
# subdomain's tombstone. ARGV: id, tenant, then the deployment's field pairs.
CREATE_DEPLOYMENT = _script("""
local reserved = redis.call('GET', KEYS[5])
if reserved and reserved ~= ARGV[2] then return -1 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
redis.call('DEL', KEYS[5])
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], unpack(ARGV, 3))
redis.call('ZADD', KEYS[4], seq, ARGV[1])
return 1
""")

# Deletes a deployment's record and its secrets only while none of its builds is pending or
# building; its subdomain stays reserved to its tenant (a tombstone). KEYS: the deployment, its
# pending and building builds, its tenant's deployments, its subdomain, its secrets, the
# subdomain's tombstone. ARGV: id, tenant.
DELETE_DEPLOYMENT = _script("""
local active = redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3])
if active > 0 then return active end
redis.call('DEL', KEYS[1], KEYS[6])
redis.call('ZREM', KEYS[4], ARGV[1])
if redis.call('GET', KEYS[5]) == ARGV[1] then
  redis.call('DEL', KEYS[5])
  redis.call('SET', KEYS[7], ARGV[2])
end
return 0
""")

# Sets a secret (KEYS[2], field ARGV[1], value ARGV[2]) of a deployment that still exists
# (KEYS[1]), unless that would make more than ARGV[3] secrets: replies 1 when the name is new,
# 0 when it replaced a value, -1 when the deployment is gone, -2 when it has too many secrets.
SET_SECRET = _script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then
  return -2
end
return redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
""")

# Sets hash fields only on a record that still exists (a concurrent delete must not leave a stub).
HSET_IF_EXISTS = _script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
""")


# One page of a sorted set of ids (KEYS[1]), newest (highest score) first below ARGV[1],
# with each record: ARGV[2] rows at most, ARGV[3] the records' key prefix. With ARGV[4] (the
# build key prefix; '' for none), also each record's latest build's status. With KEYS[2] (the
# deployment whose builds are paged), the page is read only if that deployment belongs to the
# tenant ARGV[5], else the reply is 0. Replies id, score, record, status for each row, then,
# when more rows follow, the score of the page's last row (the next cursor). A record is its
# whole hash, or only the fields the script was made for (named in it, not sent each call).
# The ids are known only once the page is read: the hashes are named from them so that a
# page costs one round trip (on Redis Cluster a tenant's keys would need one hash tag).
def _page(record_fields: tuple[str, ...] = ()) -> str:
    wanted = ", ".join(f"'{name}'" for name in record_fields)
    read = (
        f"redis.call('HMGET', ARGV[3] .. id, {wanted})" if wanted else "redis.call('HGETALL', ARGV[3] .. id)"
    )
    return _script(f"""
if KEYS[2] and redis.call('HGET', KEYS[2], '$tenant') ~= ARGV[5] then return 0 end
local limit = tonumber(ARGV[2])
local rows = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
local out = {{}}
for i = 1, math.min(#rows, 2 * limit), 2 do
  local id = rows[i]
  local status = ''
  if ARGV[4] ~= '' then
    local latest = redis.call('HGET', ARGV[3] .. id, '$latest_build_id')
    if latest then status = redis.call('HGET', ARGV[4] .. latest, '$status') or '' end
  end
  table.insert(out, id)
  table.insert(out, rows[i + 1])
  table.insert(out, {read})
  table.insert(out, status)
end
if #rows > 2 * limit then table.insert(out, rows[2 * limit]) end
return out
""")


PAGE = _page()
PAGE_OF_PUBLIC_BUILDS = _page(Build.__struct_fields__)


# A worker process's heartbeat: its record (KEYS[1]) rewritten with the Redis time of the beat
# and set to expire, and its place in the index of workers (KEYS[2]), from which the workers
# whose records have expired are dropped. ARGV: the worker's id, the record's lifetime (ms),
# then the record's field pairs. Replies the beat's time (ms).
HEARTBEAT = _script(
    _NOW_MS,
    """
local ms = now_ms()
redis.call('HSET', KEYS[1], '$worker_heartbeat_ms', ms, unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms - tonumber(ARGV[2]))
return ms
""",
)

# The farm at one instant: the Redis time, the queue (pending builds, the oldest one's entry
# time or ''), the builds running, the builds that ended within ARGV[3] ms, then each worker
# whose record has not expired: its id, its record, and for each build it runs {id, deployment,
# number}. KEYS: the workers, the pending and the building builds, the builds that ended.
# ARGV: the worker and the build key prefixes, the window (ms). The records are named from the
# ids the index holds (on Redis Cluster the farm's keys would need one hash tag).
FARM = _script(
    _NOW_MS,
    """
local ms = now_ms()
local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local out = {ms, redis.call('ZCARD', KEYS[2]), oldest[2] or '', redis.call('ZCARD', KEYS[3]),
  redis.call('ZCOUNT', KEYS[4], ms - tonumber(ARGV[3]), '+inf')}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local record = redis.call('HGETALL', ARGV[1] .. id)
  if #record > 0 then
    local running = {}
    for build in string.gmatch(redis.call('HGET', ARGV[1] .. id, '$worker_builds') or '', '[^,]+') do
      local where = redis.call('HMGET', ARGV[2] .. build, '$deployment_id', '$number')
      table.insert(running, {build, where[1] or '', where[2] or ''})
    end
    table.insert(out, {id, record, running})
  end
end
return out
""",
)
# Takes a slot of a tenant's limited kind (KEYS[1], scored by expiry): the expired go first
# (what a crashed API process held goes with them), then the slot ARGV[1] is added for ARGV[3]
# ms unless ARGV[2] (the limit; 0: none) are held already. Taking a slot held already renews it.
# Replies {1, 0}, or {0, ms until the first held slot expires}.
TAKE_SLOT = _script(
    _NOW_MS,
    """
local ms = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
local limit = tonumber(ARGV[2])
if limit > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= limit then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - ms}
end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, 0}
""",
)

# Builds pending and building, by tenant (of one tenant with ARGV[2], else of all), from the
# farm-wide active sets (KEYS: ACTIVE_STATUSES' sets): the builds' hashes are named from the ids
# found inside (ARGV[1], the build key prefix). Replies tenant, then a count per KEYS, per tenant.
ACTIVE_BY_TENANT = _script("""
local counts, order = {}, {}
for slot, key in ipairs(KEYS) do
  for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local tenant = redis.call('HGET', ARGV[1] .. id, '$tenant')
    if tenant and (ARGV[2] == '' or tenant == ARGV[2]) then
      if not counts[tenant] then
        counts[tenant] = {}
        for i = 1, #KEYS do counts[tenant][i] = 0 end
        table.insert(order, tenant)
      end
      counts[tenant][slot] = counts[tenant][slot] + 1
    end
  end
end
local out = {}
for _, tenant in ipairs(order) do
  table.insert(out, tenant)
  for i = 1, #KEYS do table.insert(out, counts[tenant][i]) end
end
return out
""")

# Sets a string (KEYS[2]) to ARGV[1] only while the record it belongs to (KEYS[1]) exists:
# replies 1, or 0 when the record is gone (a concurrent delete must not leave an orphan).
SET_IF_EXISTS = _script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
""")

# Raises a counter (KEYS[1]) to ARGV[1] unless it is above it already (TTL ARGV[2] s): replies 1
# when the rank may be acted on (raised, or equal: a retry of the same rank), 0 when it is behind.
RAISE_RANK = _script("""
if tonumber(redis.call('GET', KEYS[1]) or '0') > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
""")
