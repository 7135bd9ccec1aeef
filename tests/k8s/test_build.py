"""Every overlay builds with `kubectl kustomize`, and the kustomizations stay current."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.k8s.manifests import K8S, NAMESPACE, Obj, ident, labels, load_yaml_stream, overlay_names

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
DEPRECATED_FIELDS = ("commonLabels", "bases", "patchesStrategicMerge", "patchesJson6902", "vars")


def test_the_shipped_overlays_are_dev_and_production() -> None:
    assert {"dev", "production"} <= set(overlay_names())


def test_the_variant_builds_something(objects: list[Obj]) -> None:
    kinds = Counter(o["kind"] for o in objects)
    assert kinds["Deployment"] == 3, kinds
    assert kinds["Namespace"] == 1, kinds


def test_no_object_is_built_twice(objects: list[Obj]) -> None:
    seen = Counter((o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
                   for o in objects)
    assert [key for key, count in seen.items() if count > 1] == []


def test_everything_lives_in_the_warren_namespace(objects: list[Obj]) -> None:
    wrong = [ident(o) for o in objects
             if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != NAMESPACE]
    assert wrong == []


def test_every_object_carries_the_recommended_labels(objects: list[Obj]) -> None:
    for obj in objects:
        assert labels(obj).get("app.kubernetes.io/name"), f"{ident(obj)} has no name label"
        assert labels(obj).get("app.kubernetes.io/part-of") == "warren", ident(obj)


def test_every_pod_template_carries_the_recommended_labels(objects: list[Obj]) -> None:
    for obj in objects:
        template = obj.get("spec", {}).get("template")
        if obj["kind"] in ("Deployment", "StatefulSet") and template:
            pod_labels = template["metadata"]["labels"]
            assert pod_labels.get("app.kubernetes.io/name"), ident(obj)
            assert pod_labels.get("app.kubernetes.io/part-of") == "warren", ident(obj)
            assert pod_labels.get("app.kubernetes.io/component"), ident(obj)


@pytest.mark.parametrize("path", sorted(K8S.rglob("kustomization.yaml")),
                         ids=lambda p: str(p.relative_to(K8S)))
def test_kustomizations_use_no_deprecated_fields(path: Path) -> None:
    (doc,) = load_yaml_stream(path.read_text())
    assert [f for f in DEPRECATED_FIELDS if f in doc] == [], "use labels:/resources:/patches:"


def test_overlays_only_patch() -> None:
    """Overlays add nothing of their own: new objects come from the base or components."""
    for name in overlay_names():
        (doc,) = load_yaml_stream((K8S / "overlays" / name / "kustomization.yaml").read_text())
        assert all(r.startswith("../../base") for r in doc.get("resources", [])), name
        assert all(c.startswith("../../components/") for c in doc.get("components", [])), name
        assert all(g.get("behavior") == "merge" for g in doc.get("configMapGenerator", [])), name
        assert "secretGenerator" not in doc, name


def test_components_are_kustomize_components() -> None:
    for path in sorted((K8S / "components").glob("*/kustomization.yaml")):
        (doc,) = load_yaml_stream(path.read_text())
        assert doc["kind"] == "Component", path
        assert doc["apiVersion"] == "kustomize.config.k8s.io/v1alpha1", path
