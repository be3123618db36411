"""Every Lua script of the farm, each written once and assembled from the fragments they
share: Redis time in milliseconds, the fence check of a worker's claim, and the one writer
of a build's status and of the sorted sets indexed by it.

A script touches the keys it is given in KEYS (the Redis Cluster rule), with the exceptions
said where they are: scripts that read other records by an id found inside the script."""

from __future__ import annotations

from string import Template

from common.contract import Build
from common.models import LIMIT_NAMES, BuildStatus
from common.records import fields, keys
from common.records.keys import ACTIVE_STATUSES

# How far back the farm counts the builds that ended (keys.FINISHED_BUILDS): an hour.
FINISHED_WINDOW_MS = 3600 * 1000


def _lua_var(name: str) -> str:
    """A Lua variable in place of an id in a key name of keys.py (see _lua_key)."""
    return f"' .. {name} .. '"


def _lua_key(key: str) -> str:
    """A key name of keys.py made with _lua_var ids, as a Lua expression naming the key."""
    return f"'{key}'"


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

# A change to a deployment's builds (a field clients see, or which of its lists a build is in)
# raises the deployment's builds revision, by which the API knows a page of its builds it
# encoded before is still true (api/build_pages.py). A deployment deleted meanwhile stays deleted.
_BUILDS_CHANGED = """
local function builds_changed(deployment)
  if redis.call('EXISTS', deployment) == 1 then redis.call('HINCRBY', deployment, '$builds_revision', 1) end
end
"""

# Scripts that change a build's status take STATUS_KEYS: KEYS[1] the build's hash, then its
# deployment's per-status sets (BuildStatus order), then the farm-wide active sets, then the
# farm-wide set of the builds that ended within the last hour (GET /farm's builds per minute),
# then the deployment's hash (its builds revision, _BUILDS_CHANGED); set_status gets them as K.
# The tenant's own sets of pending and building builds (its queue and its running count) and
# the ring of tenants with pending builds follow the status too: their keys are named from the
# build's tenant field (on Redis Cluster a tenant's keys would need one hash tag). A new build
# joins its tenant's queue only when it is queued (`queued`: the API sends its message next),
# and the tenant joins the ring just before the tenant served last.
_SET_STATUS = _BUILDS_CHANGED + Template("""
local BY_STATUS = {$by_status}
local ACTIVE = {$active}
local FINISHED = $finished
local DEPLOYMENT = $finished + 1
local function tenant_key(tenant, status) return $tenant_key end
local function set_status(K, id, number, from, to, ms, queued)
  redis.call('HSET', K[1], '$$status', to)
  local tenant = redis.call('HGET', K[1], '$$tenant') or ''
  if from then
    redis.call('ZREM', K[BY_STATUS[from]], id)
    if ACTIVE[from] then
      redis.call('ZREM', K[ACTIVE[from]], id)
      redis.call('ZREM', tenant_key(tenant, from), id)
      if from == 'pending' and redis.call('EXISTS', tenant_key(tenant, from)) == 0 then
        redis.call('ZREM', '$ring', tenant)
      end
    end
  end
  redis.call('ZADD', K[BY_STATUS[to]], number, id)
  if ACTIVE[to] then redis.call('ZADD', K[ACTIVE[to]], ms, id) end
  if to == 'building' or (to == 'pending' and queued) then
    redis.call('ZADD', tenant_key(tenant, to), ms, id)
  end
  if to == 'pending' and queued then
    redis.call('ZADD', '$ring', 'NX', (tonumber(redis.call('GET', '$turn')) or 0) - 0.5, tenant)
  end
  if not ACTIVE[to] then
    redis.call('ZADD', K[FINISHED], ms, id)
    redis.call('ZREMRANGEBYSCORE', K[FINISHED], '-inf', ms - $window_ms)
  end
  builds_changed(K[DEPLOYMENT])
end
""").substitute(
    by_status=", ".join(f"{status} = {slot}" for slot, status in enumerate(BuildStatus, start=2)),
    active=", ".join(
        f"{status} = {slot}" for slot, status in enumerate(ACTIVE_STATUSES, start=2 + len(BuildStatus))
    ),
    finished=2 + len(BuildStatus) + len(ACTIVE_STATUSES),
    window_ms=FINISHED_WINDOW_MS,
    tenant_key=_lua_key(keys.tenant_builds(_lua_var("tenant"), _lua_var("status"))),
    ring=keys.TENANT_RING,
    turn=keys.TENANT_TURN,
)
STATUS_KEY_COUNT = 3 + len(BuildStatus) + len(ACTIVE_STATUSES)
# STATUS_KEYS of the build `id` of `deployment`, as the items of a Lua table.
_STATUS_KEYS_LUA = ", ".join(
    _lua_key(key)
    for key in (
        keys.build(_lua_var("id")),
        *keys.deployment_builds_by_status(_lua_var("deployment")),
        *(keys.active_builds(status) for status in ACTIVE_STATUSES),
        keys.FINISHED_BUILDS,
        keys.deployment(_lua_var("deployment")),
    )
)
# The limit PICK reads from a tenant's limits hash (common/tenant_limits.py); the import fails
# here if the limit is renamed there.
_MAX_RUNNING = next(name for name in LIMIT_NAMES if name == "max_running")


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
set_status(KEYS, id, number, current, ARGV[2], now_ms())
return {1, current}
""",
)

# Claims a pending build, or takes over a building one whose lease expired. Refuses a build
# held under a live lease, one that ran out of attempts, a build waiting behind an older or
# running build of its deployment (when builds of a deployment run one at a time), and a
# pending build past the queue deadline. Times come from the Redis clock, shared by all hosts.
# K: the build's STATUS_KEYS. A: worker, lease (ms), max attempts, one per deployment ('1'),
# queue deadline (ms, 0: none), the build key prefix, started_at.
_CLAIM_BUILD = """
local function claim_build(K, A, ms)
  local status = redis.call('HGET', K[1], '$status')
  if not status then return {'missing'} end
  local attempt = tonumber(redis.call('HGET', K[1], '$attempt') or '0') or 0
  local id = redis.call('HGET', K[1], '$id')
  if status == 'building' then
    local lease = tonumber(redis.call('HGET', K[1], '$lease_expires_ms') or '0') or 0
    if lease > ms then return {'held'} end
    if attempt >= tonumber(A[3]) then return {'exhausted'} end
  elseif status == 'pending' then
    local queued = redis.call('ZSCORE', K[ACTIVE.pending], id)
    if queued and tonumber(A[5]) > 0 and ms - tonumber(queued) > tonumber(A[5]) then
      return {'expired'}
    end
  else
    return {'terminal'}
  end
  if A[4] == '1' then
    local number = tonumber(redis.call('HGET', K[1], '$number'))
    local older = redis.call('ZRANGE', K[BY_STATUS.pending], 0, 0, 'WITHSCORES')
    if older[1] and older[1] ~= id and tonumber(older[2]) < number then return {'busy'} end
    -- The other running builds are known only here, read in the same atomic step as their
    -- leases, so their hashes are named from their ids (on Redis Cluster a deployment's keys
    -- would need one hash tag).
    for _, other in ipairs(redis.call('ZRANGE', K[BY_STATUS.building], 0, -1)) do
      if other ~= id then
        local lease = tonumber(redis.call('HGET', A[6] .. other, '$lease_expires_ms') or '0') or 0
        if lease > ms then return {'busy'} end
      end
    end
  end
  local previous_worker = redis.call('HGET', K[1], '$worker') or ''
  redis.call('HSET', K[1], '$attempt', attempt + 1, '$worker', A[1],
    '$lease_expires_ms', ms + tonumber(A[2]), '$log_state', 'live')
  if status == 'pending' then
    redis.call('HSET', K[1], '$started_at', A[7])
    set_status(K, id, redis.call('HGET', K[1], '$number'), status, 'building', ms)
  else
    builds_changed(K[DEPLOYMENT])
  end
  return {'claimed', tostring(attempt + 1), status, previous_worker}
end
"""

# Claims one given build (claim_build). KEYS: its STATUS_KEYS; ARGV: claim_build's A.
CLAIM = _script(_NOW_MS, _SET_STATUS, _CLAIM_BUILD, "\nreturn claim_build(KEYS, ARGV, now_ms())\n")

# The fair choice of the next build to run, claimed in the same step: the tenants of the ring
# in turn (the lowest turn first), skipping a tenant at its running limit (its own max_running,
# else the farm's default), then within a tenant its oldest pending build that claim_build
# takes, skipping deployments with a running build (a deployment's oldest pending build stands
# for it: builds stored in the same millisecond sort by id in the tenant's queue). The tenant
# served gets the next turn. Replies 'claimed', attempt, previous status, previous worker, the
# build id; or else 'waiting' (builds are pending but none may start now) or 'none' (nothing is
# pending), then the ids of the builds found past the queue deadline. The records and the tenants' keys are
# named from the ids found here (the exception of the module's docstring).
# KEYS: the ring, the turn counter. ARGV: claim_build's A, the farm's default max_running, how
# many of a tenant's oldest pending builds are looked at.
PICK = _script(
    _NOW_MS,
    _SET_STATUS,
    _CLAIM_BUILD,
    f"""
local function status_keys(id, deployment) return {{{_STATUS_KEYS_LUA}}} end
local function limits_key(tenant) return {_lua_key(keys.tenant_limits(_lua_var("tenant")))} end
local ms = now_ms()
local waiting, expired = false, {{}}
for _, tenant in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local pending = tenant_key(tenant, 'pending')
  local limit = tonumber(redis.call('HGET', limits_key(tenant), '{_MAX_RUNNING}') or ARGV[8]) or 0
  local ids = {{}}
  if limit > 0 and redis.call('ZCARD', tenant_key(tenant, 'building')) >= limit then
    waiting = true
  else
    ids = redis.call('ZRANGE', pending, 0, tonumber(ARGV[9]) - 1)
    if #ids == 0 then redis.call('ZREM', KEYS[1], tenant) end
  end
  local busy = {{}}
  for _, id in ipairs(ids) do
    local deployment = redis.call('HGET', ARGV[6] .. id, '$deployment_id')
    if not deployment then
      redis.call('ZREM', pending, id)
    elseif not busy[deployment] then
      local K = status_keys(id, deployment)
      -- builds of one deployment run by number: its oldest pending build stands for it
      local head = ARGV[4] == '1' and redis.call('ZRANGE', K[BY_STATUS.pending], 0, 0)[1]
      if head and head ~= id then id, K = head, status_keys(head, deployment) end
      local claimed = claim_build(K, ARGV, ms)
      if claimed[1] == 'claimed' then
        redis.call('ZADD', KEYS[1], 'XX', redis.call('INCR', KEYS[2]), tenant)
        return {{'claimed', claimed[2], claimed[3], claimed[4], id}}
      elseif claimed[1] == 'expired' then
        table.insert(expired, id)
      elseif claimed[1] == 'terminal' or claimed[1] == 'missing' then
        redis.call('ZREM', pending, id)
      else
        busy[deployment], waiting = true, true
      end
    end
  end
end
return {{(waiting or #expired > 0) and 'waiting' or 'none', unpack(expired)}}
""",
)

# A pending build in no tenant's queue (stored by a version of the farm before the fair queue, or
# a test's) joins its tenant's queue now, so that the fair choice may take it. Replies 1 if it
# joined, 0 if it is not pending or queued already. KEYS: its STATUS_KEYS.
JOIN_QUEUE = _script(
    _NOW_MS,
    _SET_STATUS,
    """
local id, status, tenant = unpack(redis.call('HMGET', KEYS[1], '$id', '$status', '$tenant'))
if status ~= 'pending' or redis.call('ZSCORE', tenant_key(tenant, 'pending'), id) then return 0 end
set_status(KEYS, id, redis.call('HGET', KEYS[1], '$number'), 'pending', 'pending', now_ms(), true)
return 1
""",
)

# Stores a new build only if its deployment still exists and its tenant has fewer than
# max_queued builds pending (0: no limit), numbering it in the same step. Replies the number,
# 0 (the deployment is gone) or -1 (the tenant's queue is full).
# KEYS: STATUS_KEYS, the deployment, its build counter, its set of all builds, the tenant's
# pending builds. ARGV: id, the deployment's new updated_at, the build's status, max_queued,
# '1' if the build is queued (set_status), then the build's field pairs.
CREATE_BUILD = _script(
    _NOW_MS,
    _SET_STATUS,
    f"""
local deployment = KEYS[DEPLOYMENT]
local seq, all_builds = KEYS[{STATUS_KEY_COUNT + 1}], KEYS[{STATUS_KEY_COUNT + 2}]
if redis.call('EXISTS', deployment) == 0 then return 0 end
local cap = tonumber(ARGV[4])
if cap > 0 and redis.call('ZCARD', KEYS[{STATUS_KEY_COUNT + 3}]) >= cap then return -1 end
local n = redis.call('INCR', seq)
redis.call('HSET', KEYS[1], '$number', n, unpack(ARGV, 6))
redis.call('ZADD', all_builds, n, ARGV[1])
set_status(KEYS, ARGV[1], n, false, ARGV[3], now_ms(), ARGV[5] == '1')
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

# Sets a build's fields while the writer's attempt owns the build. KEYS: the build's hash, its
# deployment's hash. ARGV: the attempt, then field pairs.
FENCED_HSET = _script(
    _HOLDS_CLAIM,
    _BUILDS_CHANGED,
    """
if not holds_claim(KEYS[1], ARGV[1]) then return 0 end
if #ARGV > 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
  builds_changed(KEYS[2])
end
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
# tenant ARGV[5], else the reply is 0, and the reply starts with the deployment's builds
# revision. Replies id, score, record, status for each row, then, when more rows follow, the
# score of the page's last row (the next cursor). A record is its
# whole hash, or only the fields the script was made for (named in it, not sent each call).
# The ids are known only once the page is read: the hashes are named from them so that a
# page costs one round trip (on Redis Cluster a tenant's keys would need one hash tag).
def _page(record_fields: tuple[str, ...] = ()) -> str:
    wanted = ", ".join(f"'{name}'" for name in record_fields)
    read = (
        f"redis.call('HMGET', ARGV[3] .. id, {wanted})" if wanted else "redis.call('HGETALL', ARGV[3] .. id)"
    )
    return _script(f"""
local out = {{}}
if KEYS[2] then
  local deployment = redis.call('HMGET', KEYS[2], '$tenant', '$builds_revision')
  if deployment[1] ~= ARGV[5] then return 0 end
  table.insert(out, deployment[2] or '0')
end
local limit = tonumber(ARGV[2])
local rows = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
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


# A token's check and a request's first read in one step (common/tokens.py, api/auth.py): the
# token's fields (KEYS[1]), then the reply of one read command on KEYS[2]. ARGV: how many token
# fields, the fields, the read command, its arguments after the key.
AUTHENTICATE_WITH = _script("""
local n = tonumber(ARGV[1])
local token = redis.call('HMGET', KEYS[1], unpack(ARGV, 2, n + 1))
return {token, redis.call(ARGV[n + 2], KEYS[2], unpack(ARGV, n + 3))}
""")


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
# Renews the slots ARGV[2…] of a tenant's limited kind (KEYS[1]) for ARGV[1] ms: every slot of
# the kind that an API process holds, in one round trip however many.
RENEW_SLOTS = _script(
    _NOW_MS,
    """
local expiry = now_ms() + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return #ARGV - 1
""",
)

# Builds pending and building, by tenant, from the
# farm-wide active sets (KEYS: ACTIVE_STATUSES' sets): the builds' hashes are named from the ids
# found inside (ARGV[1], the build key prefix). Replies tenant, then a count per KEYS, per tenant.
ACTIVE_BY_TENANT = _script("""
local counts, order = {}, {}
for slot, key in ipairs(KEYS) do
  for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local tenant = redis.call('HGET', ARGV[1] .. id, '$tenant')
    if tenant then
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
