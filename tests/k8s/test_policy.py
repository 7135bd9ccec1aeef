"""Every container is probed, sized and locked down (Pod Security "restricted" and more)."""

from __future__ import annotations

from tests.k8s.manifests import Obj, all_containers, containers, ident, pod_templates, quantity

RESOURCES = ("cpu", "memory")


def _where(owner: Obj, container: Obj) -> str:
    return f"{ident(owner)} container {container['name']}"


def test_every_container_has_liveness_and_readiness_probes(objects: list[Obj]) -> None:
    for owner, template in pod_templates(objects):
        for container in containers(template["spec"], init=False):
            assert container.get("livenessProbe"), _where(owner, container)
            assert container.get("readinessProbe"), _where(owner, container)


def test_every_container_has_requests_and_limits(objects: list[Obj]) -> None:
    for owner, _, container in all_containers(objects):
        resources = container.get("resources") or {}
        for which in ("requests", "limits"):
            missing = [r for r in RESOURCES if r not in (resources.get(which) or {})]
            assert missing == [], f"{_where(owner, container)}: no {which} for {missing}"
        for r in RESOURCES:
            request, limit = resources["requests"][r], resources["limits"][r]
            assert quantity(request) <= quantity(limit), f"{_where(owner, container)}: {r}"


def _effective(pod_spec: Obj, container: Obj, field: str) -> object:
    """A container's securityContext field, falling back to the pod's."""
    own = (container.get("securityContext") or {}).get(field)
    return own if own is not None else (pod_spec.get("securityContext") or {}).get(field)


def test_every_container_is_locked_down(objects: list[Obj]) -> None:
    for owner, spec, container in all_containers(objects):
        where = _where(owner, container)
        context = container.get("securityContext") or {}
        assert _effective(spec, container, "runAsNonRoot") is True, where
        assert _effective(spec, container, "runAsUser") not in (0, None), where
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("privileged") in (None, False), where
        assert (context.get("capabilities") or {}).get("drop") == ["ALL"], where
        assert not (context.get("capabilities") or {}).get("add"), where
        seccomp = _effective(spec, container, "seccompProfile") or {}
        assert seccomp.get("type") == "RuntimeDefault", where


def test_root_filesystems_are_read_only_with_a_writable_tmp(objects: list[Obj]) -> None:
    for owner, spec, container in all_containers(objects):
        where = _where(owner, container)
        assert (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is True, where
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        assert "/tmp" in mounts, f"{where}: no /tmp mount"
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp is not an emptyDir"


def test_pods_do_not_mount_a_service_account_token(objects: list[Obj]) -> None:
    for owner, template in pod_templates(objects):
        assert template["spec"].get("automountServiceAccountToken") is False, ident(owner)


def test_no_pod_shares_the_host(objects: list[Obj]) -> None:
    for owner, template in pod_templates(objects):
        spec = template["spec"]
        assert not any(spec.get(f) for f in ("hostNetwork", "hostPID", "hostIPC")), ident(owner)
        assert not any("hostPath" in v for v in spec.get("volumes") or []), ident(owner)


def test_the_operator_made_rabbitmq_containers_are_locked_down(objects: list[Obj]) -> None:
    """The RabbitmqCluster's pods come from the operator: its override must lock them down
    too, or the namespace's restricted Pod Security level rejects them."""
    for cluster in (o for o in objects if o["kind"] == "RabbitmqCluster"):
        pod = cluster["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        names = {c["name"] for c in containers(pod)}
        assert names == {"rabbitmq", "setup-container"}
        for container in containers(pod):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]


def test_the_namespace_enforces_restricted_pod_security(objects: list[Obj]) -> None:
    (namespace,) = (o for o in objects if o["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
