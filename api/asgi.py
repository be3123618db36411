"""The ASGI entry point for the server: `gunicorn -k api.server.ApiWorker api.asgi:app`; a
WebSocket handshake the app refuses is answered as the HTTP error it is (api/ws_denial.py), and
handshakes go through the app a few at a time (api/ws_handshakes.py)."""

import gc

from api.app import create_app
from api.ws_denial import DenialResponses
from api.ws_handshakes import HandshakeTurns

# Middle-generation collections between two full ones (Python's default: 10).
FULL_COLLECTION_AFTER = 100

app = HandshakeTurns(DenialResponses(create_app()))
# What the process holds from here on lives as long as it: the collector's full passes leave it
# out, instead of walking all of it (tens of ms, under requests) every few thousand requests.
gc.freeze()
# A full collection walks every object the process holds: some 120 per open WebSocket, so it
# took 200-900 ms in a process holding 2,500 log followers (bench/log_fanout.py). Python's
# default runs one every 10 collections of the middle generation (70,000 objects allocated and
# kept) once the kept objects grew by a quarter: four times while the followers connected. After
# FULL_COLLECTION_AFTER of them, none ran. Cycles that outlive both young generations wait
# longer to be reclaimed, which costs memory, not pauses.
gc.set_threshold(700, 10, FULL_COLLECTION_AFTER)
