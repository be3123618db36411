"""The Dramatiq broker both sides share, and the msgpack encoding of its messages."""

from __future__ import annotations

from typing import Any

import dramatiq
import msgpack
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import default_middleware
from dramatiq.middleware.time_limit import TimeLimit

from common.config import Config
from common.redis_clients import sync_redis

RUN_BUILD_ACTOR = "run_build"


class MsgpackEncoder(dramatiq.Encoder):
    """Encodes queue messages as msgpack: smaller and faster than Dramatiq's JSON default."""

    def encode(self, data: dict[str, Any]) -> bytes:
        return msgpack.packb(data, use_bin_type=True)

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            return msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.UnpackException) as e:
            raise dramatiq.DecodeError("failed to decode message", data, e) from None


def create_broker(config: Config) -> RedisBroker:
    """A Redis broker without Dramatiq's TimeLimit: build timeouts are the farm's own."""
    middleware = [m() for m in default_middleware if m is not TimeLimit]
    broker = RedisBroker(client=sync_redis(config.queue_redis_url), middleware=middleware)
    broker.declare_queue(config.queue_name)
    dramatiq.set_encoder(MsgpackEncoder())
    return broker


def build_message(config: Config, build_id: str) -> dramatiq.Message:
    """The queue message that asks a worker to run one build (the API never imports actors)."""
    return dramatiq.Message(
        queue_name=config.queue_name, actor_name=RUN_BUILD_ACTOR, args=(build_id,), kwargs={}, options={}
    )
