# The worker image: `dramatiq worker.actors --queues builds integrations --processes P --threads T`.
#
# Build from the repository root (see worker.Dockerfile.dockerignore next to this file):
#
#   docker build -f deploy/docker/worker.Dockerfile -t buildfarm/worker:0.1.0 .
#
# The Docker engine. The worker only *talks* to an engine, at DOCKER_HOST; it never runs one.
# The choice made in deploy/compose.yaml and deploy/k8s/worker.yaml: a docker:dind engine
# (privileged, in its own container) listening ONLY on a unix socket in a shared volume,
#   DOCKER_HOST=unix:///var/run/dind/docker.sock
# with the socket's group set to this image's gid (dockerd --group=10001), so the worker runs
# as uid 10001, not root. No TCP listener: an unauthenticated tcp://…:2375 would hand a
# privileged engine (root on the node) to anything that can reach the port. Whoever can use the
# socket controls that engine, which is why it lives beside the worker and nowhere else.
# A host engine works too: mount /var/run/docker.sock and add its group
# (`--group-add <gid of the socket>` / `supplementalGroups`).
#
# Git sources need git and CA certificates; tini is PID 1 so that processes orphaned by a
# killed `git` are reaped (Dramatiq's master does not reap strangers) and signals reach Dramatiq.
#
# Builds run through a docker CLI (worker/buildkit.py: `DOCKER_BUILDKIT=1 docker build
# --progress=plain --secret … -`), at /usr/bin/docker, BUILDFARM_DOCKER_CLI's default. It is the
# CLI of Debian bookworm's docker.io 20.10, which drives BuildKit by itself; a docker-ce-cli >= 23
# (or trixie's docker-cli) refuses to without the buildx plugin, so moving PYTHON_IMAGE to another
# Debian release means installing that release's buildx package too. Only the CLI binary is
# taken (it needs nothing but libc): the package would also bring dockerd, containerd and runc,
# which the worker never runs. This 20.10 CLI speaks engine API 1.41, which the dind engines of
# deploy/ (docker:28) still accept; docker 29 engines refuse clients older than API 1.44.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS docker-cli
WORKDIR /tmp/docker.io
# The docker.io of the base image's own Debian release, whatever its current version.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get download docker.io \
 && dpkg-deb --fsys-tarfile docker.io_*.deb | tar -x ./usr/bin/docker \
 && ./usr/bin/docker --version

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
RUN python -m venv /opt/buildfarm \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/buildfarm/bin/pip install -r /tmp/requirements.txt
# The worker never imports api/ (and the API image carries no worker/).
COPY common ./common
COPY worker ./worker
COPY cli ./cli
RUN /opt/buildfarm/bin/pip install --no-deps . \
 && /opt/buildfarm/bin/python -c "import worker.pipeline, worker.reaper, cli.main"

FROM ${PYTHON_IMAGE}
# Debian's current git, CA certificates and tini: pinning their versions breaks the build as
# soon as the archive moves on.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 buildfarm \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/buildfarm --create-home \
      --shell /usr/sbin/nologin buildfarm
COPY --from=build /opt/buildfarm /opt/buildfarm
COPY --from=docker-cli /tmp/docker.io/usr/bin/docker /usr/bin/docker
# Not run here: the k8s worker pod copies it to its engine's container (deploy/k8s/worker.yaml).
COPY deploy/build-egress /usr/local/bin/build-egress
# dramatiq_worker_timeout=100 (ms): an idle process polls the queue every 100 ms instead of
# backing off to 1 s. dramatiq_queue_prefetch defaults to the thread count (below), so a process
# holds no more builds than it can run and an idle process gets the next one.
ENV PATH=/opt/buildfarm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DOCKER_HOST=unix:///var/run/dind/docker.sock \
    BUILDFARM_WORKER_PROCESSES=1 \
    BUILDFARM_WORKER_THREADS=4 \
    dramatiq_worker_timeout=100
USER 10001:10001
WORKDIR /home/buildfarm
# Sources are fetched and extracted under /tmp (up to BUILDFARM_MAX_EXTRACTED_BYTES per build):
# give it room (an emptyDir in deploy/k8s).
ENTRYPOINT ["tini", "--"]
# On SIGTERM running builds get BUILDFARM_WORKER_GRACE_S (60 s) to finish, then are handed back:
# the stop timeout of the container (compose stop_grace_period, k8s
# terminationGracePeriodSeconds) must be longer than that.
CMD ["sh", "-c", "export dramatiq_queue_prefetch=\"${dramatiq_queue_prefetch:-$BUILDFARM_WORKER_THREADS}\"; exec dramatiq worker.actors --queues \"${BUILDFARM_QUEUE_NAME:-builds}\" \"${BUILDFARM_INTEGRATIONS_QUEUE:-integrations}\" --processes \"$BUILDFARM_WORKER_PROCESSES\" --threads \"$BUILDFARM_WORKER_THREADS\""]
