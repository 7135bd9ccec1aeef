"""The broker: long tasks are not cut off, guest stays home, the plugins the
dashboards and KEDA read are on, and dev and production run the same RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable

from tests.k8s.manifests import (
    Obj,
    find,
    generated,
    of_kind,
    parse_conf,
    port_number,
    quantity,
)

ONE_HOUR_MS = 3_600_000
PORTS = {"amqp": 5672, "management": 15672, "prometheus": 15692}


def _dev_broker(objects: list[Obj]) -> tuple[Obj, dict[str, str], str]:
    """The dev StatefulSet's container, its rabbitmq.conf and its enabled_plugins."""
    statefulset = find(objects, "StatefulSet", "rabbitmq")
    assert statefulset is not None
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    cm = generated(objects, "ConfigMap", "rabbitmq-config")
    assert cm is not None
    return container, parse_conf(cm["data"]["rabbitmq.conf"]), cm["data"]["enabled_plugins"]


def _check_conf(conf: dict[str, str]) -> None:
    assert int(conf["consumer_timeout"]) >= ONE_HOUR_MS, "long tasks would lose their channel"
    assert conf.get("loopback_users.guest", "true") == "true", "guest must stay loopback-only"
    assert conf.get("loopback_users", "") != "none"
    assert "default_pass" not in conf, "the password belongs in the Secret"
    assert conf.get("management_agent.disable_metrics_collector", "false") == "false"


def test_dev_broker_config(build: Callable[[str], list[Obj]]) -> None:
    container, conf, plugins = _dev_broker(build("dev"))
    _check_conf(conf)
    assert "rabbitmq_prometheus" in plugins and "rabbitmq_management" in plugins
    assert int(conf["listeners.tcp.default"]) == port_number(container, "amqp") == PORTS["amqp"]
    assert int(conf["management.tcp.port"]) == port_number(container, "management")
    assert int(conf["prometheus.tcp.port"]) == port_number(container, "prometheus")


def test_dev_broker_memory_fits_its_limit(build: Callable[[str], list[Obj]]) -> None:
    container, conf, _ = _dev_broker(build("dev"))
    limit = quantity(container["resources"]["limits"]["memory"])
    assert int(conf["total_memory_available_override_value"]) <= limit
    assert float(conf["vm_memory_high_watermark.relative"]) <= 0.8


def test_dev_broker_user_comes_from_the_secret(build: Callable[[str], list[Obj]]) -> None:
    container, _, _ = _dev_broker(build("dev"))
    env = {e["name"]: e for e in container["env"]}
    for name in ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "warren-credentials"


def test_dev_broker_is_one_node_with_a_stable_name_and_storage(
        build: Callable[[str], list[Obj]]) -> None:
    objects = build("dev")
    statefulset = find(objects, "StatefulSet", "rabbitmq")
    assert statefulset is not None and statefulset["spec"]["replicas"] == 1
    headless = find(objects, "Service", statefulset["spec"]["serviceName"])
    assert headless is not None and headless["spec"]["clusterIP"] == "None"
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/var/lib/rabbitmq"


def test_dev_broker_probes_use_the_diagnostics_cli(build: Callable[[str], list[Obj]]) -> None:
    container, _, _ = _dev_broker(build("dev"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:2] == ["rabbitmq-diagnostics", "-q"], probe
        assert container[probe]["timeoutSeconds"] >= 10, f"{probe}: the CLI needs time"


def test_production_cluster(build: Callable[[str], list[Obj]]) -> None:
    objects = build("production")
    assert of_kind(objects, "StatefulSet") == []
    (cluster,) = of_kind(objects, "RabbitmqCluster")
    assert cluster["metadata"]["name"] == "rabbitmq", "AMQP_URL's host is the cluster's Service"
    assert cluster["spec"]["replicas"] >= 3 and cluster["spec"]["replicas"] % 2 == 1
    _check_conf(parse_conf(cluster["spec"]["rabbitmq"]["additionalConfig"]))


def test_dev_and_production_run_the_same_rabbitmq(build: Callable[[str], list[Obj]]) -> None:
    dev_container, _, _ = _dev_broker(build("dev"))
    (cluster,) = of_kind(build("production"), "RabbitmqCluster")
    assert dev_container["image"] == cluster["spec"]["image"]
    assert dev_container["image"].startswith("rabbitmq:4.")
