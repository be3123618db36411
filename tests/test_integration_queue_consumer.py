"""A worker's queue consumer on real Redis (common/broker.py): a process that holds as many
messages as its threads may run fetches the next one as soon as one is acknowledged, not after
Dramatiq's idle poll (which backs off up to `dramatiq_worker_timeout`, 100 ms in the farm's
images): a build slot that frees takes the next build at once."""

import queue
import threading
import time
import uuid

from common.broker import build_message, create_broker
from common.config import Config

# The consumer's idle poll at its longest (ms): Dramatiq's consumer sleeps 50–100% of it.
POLL_MS = 1000
# How long a message is held, as a running build holds its slot: the poll backs off to its cap.
HELD_S = 1.5


def test_a_slot_that_frees_gets_the_next_message_at_once_not_after_the_idle_poll(config, redis_client):
    config = Config(**{**config.__dict__, "queue_name": f"test-consumer-{uuid.uuid4().hex[:8]}"})
    broker = create_broker(config)
    for _ in range(4):
        broker.enqueue(build_message(config, str(uuid.uuid4())))
    consumer = broker.consume(config.queue_name, prefetch=1, timeout=POLL_MS)
    fetched: queue.SimpleQueue = queue.SimpleQueue()
    stopping = threading.Event()

    def consume() -> None:  # as Dramatiq's consumer thread does
        for message in consumer:
            if message is not None:
                fetched.put((time.monotonic(), message))
            if stopping.is_set():
                return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        _, message = fetched.get(timeout=5)
        gaps = []
        for _ in range(3):
            time.sleep(HELD_S)
            acked = time.monotonic()
            consumer.ack(message)  # the worker thread is done with it
            taken, message = fetched.get(timeout=5)
            gaps.append(taken - acked)
        # Dramatiq's own consumer sleeps out its poll (0.5–1 s here) before it fetches again.
        assert max(gaps) < 0.2, gaps
    finally:
        stopping.set()
        thread.join(5)
        consumer.close()
        broker.flush(config.queue_name)
