# One image for every warren service: the command picks the service.
#
#   docker build -t warren .
#   docker run --rm -e AMQP_URL=amqp://user:pass@host:5672/%2F warren                  # worker
#   docker run --rm -e AMQP_URL=... warren python -m producer --count 100
#   docker run --rm -e AMQP_URL=... warren python -m rpc_server
#
# The base is an argument so that a machine that cannot pull from Docker Hub can
# build on a local stand-in (see docs/COMPOSE.md); any Python >= 3.11 image with
# pip and the `venv` module works.
#
# Layers, cheapest to rebuild last:
#   reqs  - the runtime requirements, extracted from pyproject.toml
#   deps  - a venv holding only the dependencies; rebuilt only when the
#           requirement list itself changes (not on any other pyproject edit)
#   build - the warren wheel; rebuilt on every code change, takes seconds
#   final - base + venv + wheel; no compiler, no build tools, non-root
# Nothing here compiles C: pika, prometheus-client and structlog are pure Python.

ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS reqs
WORKDIR /src
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > requirements.txt

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
COPY --from=reqs /src/requirements.txt /tmp/requirements.txt
# The venv has no pip of its own: the base image's pip installs into it (--python).
RUN python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --requirement /tmp/requirements.txt

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
# The build backend lives in its own venv, installed once and cached, so a code
# change needs no download. The version range is the one pyproject.toml asks for.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install "setuptools>=68"
WORKDIR /src
# README.md* : the wheel's long description, optional so a partial checkout still builds.
COPY pyproject.toml README.md* ./
COPY warren ./warren
COPY producer ./producer
COPY worker ./worker
COPY rpc_server ./rpc_server
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN groupadd --system --gid 10001 warren \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin warren
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /wheels /tmp/wheels
RUN pip --python /opt/venv/bin/python install --no-deps --no-index /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
# `python -m` puts the working directory on sys.path: mount your own task
# modules here and name them in TASK_MODULES.
WORKDIR /app
USER 10001:10001
# /metrics, /healthz, /readyz (METRICS_PORT)
EXPOSE 9100
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "warren.healthcheck"]
CMD ["python", "-m", "worker"]
