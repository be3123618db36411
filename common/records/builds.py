"""The operations on build records, written once: create, read, list, move between statuses,
claim under a lease, and the writes fenced by the claim's attempt number."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from common import contract
from common.config import Config
from common.models import ALLOWED_TRANSITIONS, Build, BuildStatus, ErrorKind, LogState, utc_now
from common.records import fields, keys, scripts
from common.records.call import Call, Steps, first, pairs, text

T = TypeVar("T")


class LostClaim(Exception):
    """Raised when a worker's write is refused because another attempt now owns the build."""


class QueueFull(Exception):
    """Raised when a new build would take its tenant past its limit of pending builds."""


@dataclass(frozen=True)
class TransitionResult:
    ok: bool
    # The status before the call: the one replaced on success, the one kept on refusal.
    previous: str | None
    reason: str = ""


@dataclass(frozen=True)
class Claim:
    """The outcome of a claim: `claimed`, or why not (held, busy, expired, terminal, …); for
    the fair choice of the next build (`claim_next`), `claimed` with the build chosen, or
    `waiting` or `none`, and the pending builds it found past the queue deadline."""

    outcome: str
    attempt: int = 0
    took_over_from: str | None = None
    build_id: str | None = None
    expired: tuple[str, ...] = ()


def status_keys(build_id: str, deployment_id: str) -> list[str]:
    """KEYS of the scripts that change a build's status (see scripts._SET_STATUS)."""
    active = [keys.active_builds(status) for status in keys.ACTIVE_STATUSES]
    by_status = keys.deployment_builds_by_status(deployment_id)
    return [keys.build(build_id), *by_status, *active, keys.FINISHED_BUILDS, keys.deployment(deployment_id)]


def load(build_id: str) -> Call[Build | None]:
    return Call(
        parse=lambda replies: Build.from_redis(replies[0]),
        commands=[("HGETALL", keys.build(build_id))],
    )


def get_build(deployment_id: str, build_id: str) -> Steps[Build | None]:
    """The deployment's build; None if it is missing or another deployment's."""
    build = yield load(build_id)
    return build if build is not None and build.deployment_id == deployment_id else None


def create_build(build: Build, max_queued: int = 0, queued: bool = False) -> Call[Build | None]:
    """Stores a new build numbered next in its deployment; None if the deployment is gone;
    QueueFull if its tenant has `max_queued` builds queued already (0: no limit). `queued`: the
    build's queue message is sent next (api/submission.py), so it joins its tenant's queue, from
    which the fair choice takes builds; a build stored without (by a test) is never chosen."""
    values = build.to_redis()
    del values[fields.NUMBER], values[fields.STATUS]

    def parse(number: int) -> Build | None:
        if number == -1:
            raise QueueFull(build.tenant)
        if not number:
            return None
        build.number = int(number)
        return build

    return Call(
        parse,
        script=scripts.CREATE_BUILD,
        keys=[
            *status_keys(build.id, build.deployment_id),
            keys.deployment_build_seq(build.deployment_id),
            keys.deployment_builds(build.deployment_id),
            keys.tenant_builds(build.tenant, BuildStatus.PENDING),
        ],
        args=[build.id, build.created_at, build.status, max_queued, "1" if queued else "0", *pairs(values)],
    )


def page_args(before: int | None, limit: int) -> list[Any]:
    return [f"({before}" if before is not None else "+inf", limit]


def split_page(reply: list[Any]) -> tuple[list[Any], int | None]:
    """A page script's reply as its rows (4 items each) and the next cursor, if more rows follow."""
    end = len(reply) // 4 * 4
    return reply[:end], int(float(reply[end])) if len(reply) > end else None


class BuildsPage(NamedTuple):
    builds: list[contract.Build]
    # The next page's cursor, if more builds follow.
    cursor: int | None
    # The deployment's builds revision the page was read at (builds_revision).
    revision: int


def list_builds(
    tenant: str, deployment_id: str, status: str | None, limit: int, before: int | None
) -> Call[BuildsPage | None]:
    """One page of a deployment's builds as clients see them, newest first below the cursor,
    in one round trip that also checks the deployment is the tenant's (None if it is not, or
    is gone) and reads only the public fields."""

    def parse(reply: list[Any] | int) -> BuildsPage | None:
        if reply == 0:
            return None
        rows, cursor = split_page(reply[1:])
        builds = [contract.build_from_values(values) for values in rows[2::4] if values[0] is not None]
        return BuildsPage(builds, cursor, int(reply[0]))

    return Call(
        parse,
        script=scripts.PAGE_OF_PUBLIC_BUILDS,
        keys=[keys.deployment_builds(deployment_id, status), keys.deployment(deployment_id)],
        args=[*page_args(before, limit), keys.BUILD_PREFIX, "", tenant],
    )


class BuildsRevision(NamedTuple):
    # The deployment's tenant.
    tenant: str
    # Raised by every change to the deployment's builds (a field clients see, or which of its
    # lists a build is in): scripts._BUILDS_CHANGED.
    revision: int


def builds_revision(deployment_id: str) -> Call[BuildsRevision | None]:
    """The deployment's tenant and the revision of its builds; None if the deployment is gone."""

    def parse(replies: list[list[bytes | None]]) -> BuildsRevision | None:
        tenant, revision = replies[0]
        return None if tenant is None else BuildsRevision(tenant.decode(), int(revision or 0))

    wanted = (fields.TENANT, fields.BUILDS_REVISION)
    return Call(parse, commands=[("HMGET", keys.deployment(deployment_id), *wanted)])


# Why TRANSITION refused, by its reply code (1: moved).
_REFUSALS = {-1: "not_found", -2: "fenced", 0: "invalid_transition"}


def _parse_transition(raw: list[Any]) -> TransitionResult:
    code = int(raw[0])
    return TransitionResult(code == 1, text(raw[1]) or None, _REFUSALS.get(code, ""))


def transition(
    build_id: str,
    deployment_id: str,
    to: BuildStatus,
    values: dict[str, str] | None = None,
    *,
    expected: frozenset[BuildStatus] | None = None,
    attempt: int | None = None,
) -> Call[TransitionResult]:
    """Moves the build to `to` with `values` set, if the move is allowed from its current
    status (and that status is in `expected`); with `attempt`, only under that claim."""
    sources = [s for s, targets in ALLOWED_TRANSITIONS.items() if to in targets]
    if expected is not None:
        sources = [s for s in sources if s in expected]
    args = [",".join(sources), to.value, "" if attempt is None else str(attempt), *pairs(values or {})]
    return Call(
        _parse_transition, script=scripts.TRANSITION, keys=status_keys(build_id, deployment_id), args=args
    )


def join_queue(build: Build) -> Call[bool]:
    """Puts a pending build that is in no tenant's queue (stored before the fair queue) in its
    tenant's queue; False if it is not pending or queued already."""
    return Call(bool, script=scripts.JOIN_QUEUE, keys=status_keys(build.id, build.deployment_id))


def _claim_args(worker_id: str, config: Config, started_at: str) -> list[Any]:
    """The arguments of a claim (scripts._CLAIM_BUILD) under `config`."""
    return [
        worker_id,
        int(config.lease_ttl_s * 1000),
        config.max_attempts,
        "1" if config.one_build_per_deployment else "0",
        int(config.queue_deadline_s * 1000),
        keys.BUILD_PREFIX,
        started_at,
    ]


def claim(build: Build, worker_id: str, config: Config) -> Call[Claim]:
    """Claims the build under a new attempt number and a fresh lease (`lease_ttl_s`), within
    `max_attempts`, behind older builds of its deployment (`one_build_per_deployment`) and not
    past `queue_deadline_s` of the config; on success `build` shows the claim."""
    started_at = utc_now()

    def parse(raw: list[bytes]) -> Claim:
        outcome = raw[0].decode()
        if outcome != "claimed":
            return Claim(outcome)
        attempt, previous_status, previous_worker = int(raw[1]), raw[2].decode(), raw[3].decode()
        build.status, build.attempt, build.worker = BuildStatus.BUILDING.value, attempt, worker_id
        build.log_state = LogState.LIVE.value
        if previous_status == BuildStatus.PENDING:
            build.started_at = started_at  # a takeover keeps the first attempt's start
        took_over = previous_worker if previous_status == BuildStatus.BUILDING else None
        return Claim(outcome, attempt, took_over)

    return Call(
        parse,
        script=scripts.CLAIM,
        keys=status_keys(build.id, build.deployment_id),
        args=_claim_args(worker_id, config, started_at),
    )


# How many of a tenant's oldest pending builds the fair choice looks at: past builds of
# deployments that are busy, the next ones wait for the next choice.
PICK_SCAN = 100


def claim_next(worker_id: str, config: Config, default_max_running: int) -> Call[Claim]:
    """Claims the next pending build in fair order (scripts.PICK): the tenants in turn, each
    within its running limit (`default_max_running` for a tenant without its own), oldest
    first within a tenant, behind older builds of its deployment, as `claim` does."""

    def parse(raw: list[bytes]) -> Claim:
        outcome = raw[0].decode()
        if outcome != "claimed":
            return Claim(outcome, expired=tuple(item.decode() for item in raw[1:]))
        return Claim(outcome, int(raw[1]), None, raw[4].decode())

    return Call(
        parse,
        script=scripts.PICK,
        keys=[keys.TENANT_RING, keys.TENANT_TURN],
        args=[*_claim_args(worker_id, config, utc_now()), default_max_running, PICK_SCAN],
    )


@dataclass(frozen=True)
class TenantCounts:
    running: int
    queued: int


def tenant_counts(tenant: str) -> Call[TenantCounts]:
    """How many of the tenant's builds are building and pending, in one round trip."""
    return Call(
        lambda replies: TenantCounts(*replies),
        commands=[
            ("ZCARD", keys.tenant_builds(tenant, BuildStatus.BUILDING)),
            ("ZCARD", keys.tenant_builds(tenant, BuildStatus.PENDING)),
        ],
    )


def queue_position(build: Build) -> Call[int | None]:
    """A pending build's place among its tenant's pending builds, oldest first (1: the next of
    the tenant's to start); None once it is not pending."""
    index = keys.tenant_builds(build.tenant, BuildStatus.PENDING)
    return Call(
        lambda replies: None if replies[0] is None else replies[0] + 1, commands=[("ZRANK", index, build.id)]
    )


def renew(build: Build, lease_s: float) -> Call[bool]:
    """Extends the lease; False once another attempt owns the build or it has ended."""
    args = [str(build.attempt), int(lease_s * 1000)]
    return Call(bool, script=scripts.RENEW, keys=[keys.build(build.id)], args=args)


def _fenced_set(build: Build, values: dict[str, str], parse: Callable[[int], T]) -> Call[T]:
    """Sets fields while the build's attempt is still `build.attempt`; `parse` gets 0 otherwise."""
    args = [str(build.attempt), *pairs(values)]
    build_keys = [keys.build(build.id), keys.deployment(build.deployment_id)]
    return Call(parse, script=scripts.FENCED_HSET, keys=build_keys, args=args)


def release(build: Build) -> Call[bool]:
    """Ends the lease now, so that the next delivery takes the build over."""
    return _fenced_set(build, {fields.LEASE_EXPIRES_MS: "0"}, bool)


def seize(build: Build, worker_id: str) -> Call[bool]:
    """Takes the build from its current attempt without running it (to end it)."""

    def parse(written: int) -> bool:
        if written:
            build.attempt, build.worker = build.attempt + 1, worker_id
        return bool(written)

    return _fenced_set(build, {fields.ATTEMPT: str(build.attempt + 1), fields.WORKER: worker_id}, parse)


def update(build: Build, **values: str) -> Call[None]:
    """Sets fields of the build under its claim, and on `build`."""

    def parse(written: int) -> None:
        if not written:
            raise LostClaim(build.id)
        for name, value in values.items():
            setattr(build, name, value)

    return _fenced_set(build, values, parse)


def finish(build: Build, status: BuildStatus, **values: str) -> Steps[bool]:
    """building → a terminal status under the build's claim; False if the build already ended
    or the claim was lost."""
    values[fields.FINISHED_AT] = utc_now()
    building = frozenset({BuildStatus.BUILDING})
    result = yield transition(
        build.id, build.deployment_id, status, values, expected=building, attempt=build.attempt
    )
    if result.ok:
        build.status = status.value
        for name, value in values.items():
            setattr(build, name, value)
    return result.ok


def append_log(build_id: str, attempt: int, field: bytes, entries: list[tuple[str, str]]) -> Call[bool]:
    """Appends (entry id, text) entries to the build's log; False if `attempt` lost its claim."""
    args: list[Any] = [str(attempt), field]
    for ident, line in entries:
        args += [ident, line]
    return Call(
        lambda written: written != -1,
        script=scripts.APPEND_LOG,
        keys=[keys.build(build_id), keys.build_log(build_id)],
        args=args,
    )


def request_cancel(build: Build, requested_by: str) -> Call[None]:
    """Flags a running build; its worker sees the flag within a second and stops it."""
    return Call(
        lambda _: None, commands=[("HSET", keys.build(build.id), fields.CANCEL_REQUESTED_BY, requested_by)]
    )


def cancel_requested_by(build: Build) -> Call[str | None]:
    return Call(
        lambda replies: text(replies[0]),
        commands=[("HGET", keys.build(build.id), fields.CANCEL_REQUESTED_BY)],
    )


def supersede_queued(newer: Build) -> Steps[list[str]]:
    """Cancels the builds of the deployment still waiting in the queue behind `newer`; returns
    the ids of those it cancelled."""
    index = keys.deployment_builds(newer.deployment_id, BuildStatus.PENDING)
    older_ids = yield Call(first, commands=[("ZRANGEBYSCORE", index, "-inf", f"({newer.number}")])
    cancelled = []
    for raw in older_ids:
        values = {
            fields.FINISHED_AT: utc_now(),
            fields.ERROR: f"Superseded by build #{newer.number}",
            fields.ERROR_KIND: ErrorKind.CANCELLED.value,
        }
        pending = frozenset({BuildStatus.PENDING})
        result = yield transition(
            raw.decode(), newer.deployment_id, BuildStatus.CANCELLED, values, expected=pending
        )
        if result.ok:
            cancelled.append(raw.decode())
    return cancelled


# How far back a build looks for the images whose layers it may reuse.
CACHE_LOOKBACK = 20


def cache_images(build: Build) -> Steps[list[str]]:
    """The images a build may take its cache from: its deployment's last successful image and,
    for git, the last one of its branch (when the deployment's last success was another)."""
    index = keys.deployment_builds(build.deployment_id, BuildStatus.SUCCESS)
    ids = yield Call(first, commands=[("ZREVRANGE", index, 0, CACHE_LOOKBACK - 1)])
    if not ids:
        return []
    reads = [("HMGET", keys.build(raw.decode()), fields.IMAGE_TAG, fields.BRANCH) for raw in ids]
    rows = yield Call(lambda replies: replies, commands=reads)
    found = [(text(tag), text(branch)) for tag, branch in rows if tag]
    images = [found[0][0]] if found else []
    same_branch = next((tag for tag, branch in found if branch == build.branch), None)
    if build.branch and same_branch and same_branch not in images:
        images.append(same_branch)
    return images


def now_ms() -> Call[int]:
    """The Redis clock, which every host shares, in milliseconds."""
    return Call(lambda replies: replies[0][0] * 1000 + replies[0][1] // 1000, commands=[("TIME",)])
