"""GET /farm: the farm itself — workers alive, queue, pace of builds — for any token; the builds
each worker runs only for an admin's (other tenants' builds are not a tenant's to see)."""

from __future__ import annotations

import itertools

import falcon

from api.auth import principal
from api.store import RecordStore
from common import contract
from common.records.workers import FarmState, WorkerState


def _worker(state: WorkerState, admin: bool) -> contract.FarmWorker:
    worker = contract.FarmWorker(
        id=state.worker_id,
        host=state.host,
        pid=state.pid,
        threads=state.threads,
        slots_in_use=len(state.builds),
        builder=state.builder,
        engine_version=state.engine_version or None,
        started_at=state.started_at,
        last_heartbeat=state.last_heartbeat,
        stale=state.stale,
    )
    if admin:
        worker.builds = [contract.FarmBuild(b.build_id, b.deployment_id, b.number) for b in state.builds]
    return worker


def _hosts(workers: list[contract.FarmWorker]) -> list[contract.FarmHost]:
    by_host = itertools.groupby(sorted(workers, key=lambda w: w.host), key=lambda w: w.host)
    hosts = []
    for host, group in by_host:
        processes = list(group)
        hosts.append(
            contract.FarmHost(
                host=host,
                processes=len(processes),
                threads=max(w.threads for w in processes),
                slots_in_use=sum(w.slots_in_use for w in processes),
                stale=all(w.stale for w in processes),
            )
        )
    return hosts


def public_farm(state: FarmState, admin: bool) -> contract.Farm:
    workers = [_worker(w, admin) for w in sorted(state.workers, key=lambda w: (w.host, w.pid))]
    alive = [w for w in workers if not w.stale]
    return contract.Farm(
        view="admin" if admin else "tenant",
        hosts=_hosts(workers),
        workers=workers,
        slots=sum(w.threads for w in alive),
        slots_in_use=sum(w.slots_in_use for w in alive),
        queue=contract.FarmQueue(state.queued, state.oldest_wait_s, state.building),
        builds_last_hour=state.finished_in_window,
        builds_per_minute=round(state.finished_in_window / (state.window_s / 60), 2),
    )


class FarmResource:
    def __init__(self, store: RecordStore) -> None:
        self.store = store

    async def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = public_farm(await self.store.read_farm(), principal(req).admin)
