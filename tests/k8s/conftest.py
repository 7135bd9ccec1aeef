"""Fixtures: each kustomize variant is built once per session."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.k8s.manifests import Obj, Variant, kubectl_path, kustomize, variants

VARIANTS = {v.name: v for v in variants()}


@pytest.fixture(scope="session")
def kubectl() -> str:
    return kubectl_path()


@pytest.fixture(scope="session")
def build(kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[Obj]]:
    cache: dict[str, list[Obj]] = {}

    def built(name: str) -> list[Obj]:
        if name not in cache:
            variant: Variant = VARIANTS[name]
            workdir = tmp_path_factory.mktemp(name.replace("+", "-"))
            cache[name] = kustomize(kubectl, variant.kustomization(workdir))
        return cache[name]

    return built


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def objects(variant: str, build: Callable[[str], list[Obj]]) -> list[Obj]:
    return build(variant)
