"""The Dramatiq broker both sides share, and the msgpack encoding of its messages."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import msgpack
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
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


class _SlotConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, but one whose process has as many messages as it may hold
    (its prefetch) fetches again as soon as one is acknowledged, not after its idle poll (up to
    `dramatiq_worker_timeout`, 100 ms in the farm's images): a build slot that frees takes the
    next build at once. An idle consumer polls as Dramatiq's does."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._slot_freed = threading.Event()

    def ack(self, message) -> None:
        try:
            super().ack(message)
        finally:
            self._slot_freed.set()

    def nack(self, message) -> None:
        try:
            super().nack(message)
        finally:
            self._slot_freed.set()

    def __next__(self):
        self._slot_freed.clear()
        if not self.message_cache and self.outstanding_message_count >= self.prefetch:
            # None: the consumer thread handles its delayed messages and asks again.
            self._slot_freed.wait(self.timeout / 1000)
            return None
        return super().__next__()


class _Broker(RedisBroker):
    @property
    def consumer_class(self):
        return _SlotConsumer


def create_broker(config: Config) -> RedisBroker:
    """A Redis broker without Dramatiq's TimeLimit (build timeouts are the farm's own), whose
    consumers fetch as soon as a slot frees (_SlotConsumer)."""
    middleware = [m() for m in default_middleware if m is not TimeLimit]
    broker = _Broker(client=sync_redis(config.queue_redis_url), middleware=middleware)
    broker.declare_queue(config.queue_name)
    dramatiq.set_encoder(MsgpackEncoder())
    return broker


def build_message(config: Config, build_id: str) -> dramatiq.Message:
    """The queue message that asks a worker to run one build (the API never imports actors)."""
    return dramatiq.Message(
        queue_name=config.queue_name, actor_name=RUN_BUILD_ACTOR, args=(build_id,), kwargs={}, options={}
    )
