"""The ASGI entry point for the server: `gunicorn -k api.server.ApiWorker api.asgi:app`; a
WebSocket handshake the app refuses is answered as the HTTP error it is (api/ws_denial.py)."""

from api.app import create_app
from api.ws_denial import DenialResponses

app = DenialResponses(create_app())
