"""The ASGI entry point for the server: `gunicorn -k api.server.ApiWorker api.asgi:app`."""

from api.app import create_app

app = create_app()
