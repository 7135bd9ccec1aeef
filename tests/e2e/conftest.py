"""Fixtures for the compose end-to-end tests: a Docker CLI, an engine, a running stack.

Skips locally with a reason when Docker is missing; with CI=true that is a failure.
Where `../shared/tools/offline-images` exists beside the repository (this machine,
and CI), the stack runs on its local stand-in images; elsewhere on the public ones.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack, docker_cli, image_env, require_compose_v2, require_engine


@pytest.fixture(scope="session")
def docker() -> str:
    """The docker CLI with Compose v2; no engine needed (config, lint)."""
    cli = docker_cli()
    require_compose_v2(cli)
    return cli


@pytest.fixture(scope="session")
def docker_engine(docker: str) -> str:
    require_engine(docker)
    return docker


@pytest.fixture(scope="module")
def stack(docker_engine: str, tmp_path_factory: pytest.TempPathFactory,
          request: pytest.FixtureRequest) -> Iterator[Stack]:
    """`up -d --build --wait --scale worker=4` every service but Grafana; `down -v` after.

    WARREN_E2E_PREFETCH overrides the workers' PREFETCH (0 = unlimited: the
    fair-dispatch test must then fail, which is how its bound was checked).
    """
    extra = {}
    if os.environ.get("WARREN_E2E_PREFETCH"):
        extra["PREFETCH"] = os.environ["WARREN_E2E_PREFETCH"]
    stack = Stack.create(docker_engine, image_env(docker_engine),
                         tmp_path_factory.mktemp("compose-e2e"), extra)
    failed_before = request.session.testsfailed
    try:
        stack.up()
        yield stack
    finally:
        stack.down()  # also when `up` itself failed: volumes and networks must not leak
        if request.session.testsfailed > failed_before or not stack.up_seconds:
            print(f"\n[e2e] compose logs of {stack.project}: "
                  f"{stack.log_dir / (stack.project + '.log')}", file=sys.stderr)
