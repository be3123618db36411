"""Keeps a long-running worker host's Docker engine within a disk budget: stale dangling
images always go; past the budget, the images this farm built and pushed (they live on in the
registry) go oldest first, then the build cache."""

from __future__ import annotations

import logging
import time

import docker.errors

from common.models import BuildStatus
from common.records import fields, keys
from worker.context import WorkerContext
from worker.docker_build import create_docker

logger = logging.getLogger("buildfarm.docker_pruning")

DF_ATTEMPTS = 10
# Images younger than this are never removed: one may still be on its way to the registry.
KEEP_RECENT_S = 15 * 60


def disk_usage(client) -> tuple[int, list[dict]]:
    """(image layers plus build cache in bytes, the images with their own sizes). The engine
    runs one disk-usage scan at a time and refuses a second meanwhile (another worker's, or
    `docker system df`): wait for it."""
    for attempt in range(DF_ATTEMPTS):
        try:
            usage = client.df()
            break
        except docker.errors.APIError as e:
            if "already running" not in str(e) or attempt == DF_ATTEMPTS - 1:
                raise
            time.sleep(1)
    cache = sum(entry.get("Size", 0) for entry in usage.get("BuildCache") or [])
    return (usage.get("LayersSize") or 0) + cache, usage.get("Images") or []


def builds_running_on_this_host(ctx: WorkerContext) -> int:
    host = ctx.worker_id.rsplit(":", 1)[0]
    now_ms = ctx.records.now_ms()
    running = 0
    for raw in ctx.redis.zrange(keys.active_builds(BuildStatus.BUILDING), 0, -1):
        worker, lease = ctx.redis.hmget(keys.build(raw.decode()), fields.WORKER, fields.LEASE_EXPIRES_MS)
        if worker and lease and int(lease) > now_ms and worker.decode().rsplit(":", 1)[0] == host:
            running += 1
    return running


def prune_docker(ctx: WorkerContext, keep_recent_s: float = KEEP_RECENT_S) -> dict[str, int]:
    """Returns what was removed: dangling images, pushed images, bytes of build cache.
    Skipped while a build runs on this host: a classic build looks up its layer cache among
    the very images a prune removes."""
    removed = {"dangling": 0, "pushed": 0, "cache_bytes": 0}
    if builds_running_on_this_host(ctx):
        logger.info("a build runs on this host: Docker pruning waits for the next round")
        return removed
    client = create_docker(ctx.config)
    budget = ctx.config.docker_disk_budget_bytes
    try:
        # A classic build's intermediate images are dangling until the build ends: only those
        # older than any build can run are garbage.
        stale = {"dangling": True, "until": f"{ctx.config.build_timeout_s + 600}s"}
        removed["dangling"] = len(client.prune_images(filters=stale).get("ImagesDeleted") or [])
        usage, images = disk_usage(client)
        if usage > budget:
            prefix = ctx.config.registry + "/"
            newest = time.time() - keep_recent_s
            ours = [
                i
                for i in images
                if i["Created"] < newest and any(t.startswith(prefix) for t in i.get("RepoTags") or [])
            ]
            for image in sorted(ours, key=lambda i: i["Created"]):
                try:
                    client.remove_image(image["Id"], force=True)
                except docker.errors.APIError as e:
                    # A tenant's image that a later one was built from by the classic builder (it
                    # records the parent) cannot go before its child: a later round takes it.
                    if e.status_code != 409:
                        raise
                    continue
                removed["pushed"] += 1
                # What removing it frees: the layers no other image shares.
                usage -= max(0, image.get("Size", 0) - max(0, image.get("SharedSize", 0)))
                if usage <= budget:
                    break
            client.prune_images(filters=stale)
            if disk_usage(client)[0] > budget:
                removed["cache_bytes"] = client.prune_builds().get("SpaceReclaimed") or 0
    finally:
        client.close()
    if any(removed.values()):
        logger.info(
            "pruned %(dangling)s dangling and %(pushed)s pushed image(s), "
            "%(cache_bytes)s bytes of build cache",
            removed,
        )
    return removed
