"""Every built object validates strictly: built-in kinds against the Kubernetes schemas
(kubernetes-validate), custom resources against their CRDs' schemas in tests/k8s/crds/."""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.k8s.manifests import CRD_DIR, INSTALL_HINT, Obj, ident
from tests.support.needs import need

CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}
Build = Callable[[str], list[Obj]]


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        need(False, f"{name} is not installed: {INSTALL_HINT}")
        raise


def k8s_versions() -> list[str]:
    """The three newest minor releases kubernetes-validate knows: the ones still supported."""
    utils = _module("kubernetes_validate.utils")
    minors = sorted({v.rsplit(".", 1)[0] for v in utils.all_versions()},
                    key=lambda v: tuple(int(x) for x in v.split(".")))
    return minors[-3:]


def crd_path(api_version: str, kind: str) -> Path:
    group, version = api_version.split("/")
    return CRD_DIR / f"{group}_{version}_{kind}.json"


@cache
def crd_validator(api_version: str, kind: str) -> Any:
    """A Draft 2020-12 validator whose $refs into Kubernetes' own definitions resolve
    through kubernetes-validate's bundled (strict) schemas."""
    jsonschema = _module("jsonschema")
    referencing = _module("referencing")
    schema = json.loads(crd_path(api_version, kind).read_text())
    definitions = _k8s_definitions()
    registry = referencing.Registry().with_resource(
        definitions["$id"], referencing.Resource.from_contents(definitions))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _k8s_definitions() -> dict[str, Any]:
    kv = _module("kubernetes_validate")
    root = Path(kv.__file__).parent / "kubernetes-json-schema"
    latest = k8s_versions()[-1]
    return json.loads((root / f"v{latest}.0-local-strict" / "_definitions.json").read_text())


def validation_errors(obj: Obj) -> list[str]:
    key = (obj["apiVersion"], obj["kind"])
    if key in CUSTOM:
        return [f"{e.json_path}: {e.message}" for e in crd_validator(*key).iter_errors(obj)]
    return [err for version in k8s_versions() for err in _builtin_errors(obj, version)]


def _builtin_errors(obj: Obj, version: str) -> list[str]:
    kv = _module("kubernetes_validate")
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"k8s {version}: {path}: {exc.message}"]
    except kv.SchemaNotFoundError as exc:
        return [f"k8s {version}: no schema: {exc.message} (a CRD schema belongs in {CRD_DIR})"]
    return []


def test_every_object_validates_strictly(objects: list[Obj]) -> None:
    problems = {ident(o): errs for o in objects if (errs := validation_errors(o))}
    assert problems == {}


@pytest.mark.parametrize("path", sorted(CRD_DIR.glob("*.json")), ids=lambda p: p.name)
def test_crd_schemas_are_valid_json_schemas(path: Path) -> None:
    jsonschema = _module("jsonschema")
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_every_custom_kind_has_a_schema() -> None:
    assert sorted(crd_path(*key).name for key in CUSTOM) == sorted(
        p.name for p in CRD_DIR.glob("*.json"))


# The checks must be able to fail: a typo in a field name is caught, for both kinds.

def _typo(objects: list[Obj], kind: str) -> Obj:
    obj = copy.deepcopy(next(o for o in objects if o["kind"] == kind))
    obj["spec"]["replicaz"] = 2
    return obj


def test_a_misspelled_field_in_a_builtin_object_fails(build: Build) -> None:
    assert validation_errors(_typo(build("dev"), "Deployment"))


def test_a_misspelled_probe_field_fails(build: Build) -> None:
    deployment = copy.deepcopy(next(o for o in build("dev") if o["kind"] == "Deployment"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    assert validation_errors(deployment)


@pytest.mark.parametrize("kind", ["ScaledObject", "RabbitmqCluster", "PodMonitor"])
def test_a_misspelled_field_in_a_custom_resource_fails(build: Build, kind: str) -> None:
    assert validation_errors(_typo(build("production"), kind))


def test_a_wrong_type_in_a_custom_resource_fails(build: Build) -> None:
    scaled = copy.deepcopy(next(o for o in build("production") if o["kind"] == "ScaledObject"))
    scaled["spec"]["triggers"][0]["metadata"]["threshold"] = 10  # the CRD wants strings
    assert validation_errors(scaled)


def test_an_unknown_fallback_behavior_fails(build: Build) -> None:
    scaled = copy.deepcopy(next(o for o in build("production") if o["kind"] == "ScaledObject"))
    scaled["spec"]["fallback"]["behavior"] = "currentReplicasIfBigger"
    assert validation_errors(scaled)


def test_an_embedded_kubernetes_type_is_checked_too(build: Build) -> None:
    cluster = copy.deepcopy(next(o for o in build("production")
                                 if o["kind"] == "RabbitmqCluster"))
    cluster["spec"]["resources"]["limitz"] = {"cpu": "1"}
    assert validation_errors(cluster)
