"""The ASGI entry point for the server: `gunicorn -k uvicorn_worker.UvicornWorker api.asgi:app`."""

from api.app import create_app

app = create_app()
