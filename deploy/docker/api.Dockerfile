# The API image: gunicorn + uvicorn workers (api.server.ApiWorker) serving api.asgi:app on :8000.
#
# Build from the repository root (the context is the repo; only pyproject.toml and the
# packages are copied, see api.Dockerfile.dockerignore next to this file):
#
#   docker build -f deploy/docker/api.Dockerfile -t buildfarm/api:0.1.0 .
#
# PYTHON_IMAGE picks the base (pin it by digest, or point it at your mirror).
# Configuration is entirely environment variables (common/config.py, README "Configuration");
# WEB_CONCURRENCY sets gunicorn's worker processes. Runs as uid/gid 10001, never root.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so that a code change reuses this layer.
COPY pyproject.toml ./
RUN python -m venv /opt/buildfarm \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/buildfarm/bin/pip install -r /tmp/requirements.txt
# The API never imports worker/ (and the worker image carries no api/).
COPY common ./common
COPY api ./api
COPY cli ./cli
RUN /opt/buildfarm/bin/pip install --no-deps . \
 && /opt/buildfarm/bin/python -c "import api.asgi, api.server, cli.main"

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 buildfarm \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/buildfarm --create-home \
      --shell /usr/sbin/nologin buildfarm
COPY --from=build /opt/buildfarm /opt/buildfarm
# XDG_RUNTIME_DIR=/tmp: gunicorn >= 25.1 puts its control socket there (the root filesystem
# may be read-only; /tmp is a volume in deploy/k8s).
ENV PATH=/opt/buildfarm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_RUNTIME_DIR=/tmp \
    WEB_CONCURRENCY=2
USER 10001:10001
WORKDIR /home/buildfarm
EXPOSE 8000
# Liveness is GET /healthz, readiness GET /readyz (Redis and S3 answer): see deploy/compose.yaml
# and deploy/k8s/api.yaml. gunicorn is PID 1 and reaps its own workers; SIGTERM is a graceful stop.
CMD ["gunicorn", "api.asgi:app", \
     "--worker-class", "api.server.ApiWorker", \
     "--bind", "0.0.0.0:8000", \
     "--worker-tmp-dir", "/dev/shm", \
     "--graceful-timeout", "20", \
     "--access-logfile", "-"]
