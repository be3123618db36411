"""The ASGI entry point for the server: `gunicorn -k api.server.ApiWorker api.asgi:app`; a
WebSocket handshake the app refuses is answered as the HTTP error it is (api/ws_denial.py)."""

import gc

from api.app import create_app
from api.ws_denial import DenialResponses

app = DenialResponses(create_app())
# What the process holds from here on lives as long as it: the collector's full passes leave it
# out, instead of walking all of it (tens of ms, under requests) every few thousand requests.
gc.freeze()
