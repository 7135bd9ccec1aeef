"""Fixtures for the security suite: the deploy files as data, built once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testbed.processes import REPO
from tests.k8s.manifests import Obj, kubectl_path, kustomize, load_yaml_stream, variants

COMPOSE_FILE = REPO / "docker-compose.yml"


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """docker-compose.yml as written (variables not interpolated)."""
    [doc] = load_yaml_stream(COMPOSE_FILE.read_text())
    return doc


@pytest.fixture(scope="session")
def k8s_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    """Every kustomize variant tests/k8s knows (each overlay, and base + components)."""
    kubectl = kubectl_path()
    built = {}
    for variant in variants():
        workdir: Path = tmp_path_factory.mktemp(variant.name.replace("+", "-"))
        built[variant.name] = kustomize(kubectl, variant.kustomization(workdir))
    return built
