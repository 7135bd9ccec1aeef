"""The manifests agree with the code: setting names, defaults, ports, probe paths,
shutdown grace, credentials."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

from tests.k8s.manifests import (
    EXTERNAL,
    K8S,
    Obj,
    config,
    containers,
    env_names,
    find,
    ident,
    of_kind,
    pod_templates,
    pods_selected,
    port_number,
    references,
    secret_data,
    warren_containers,
)
from warren.health import Health
from warren.httpserver import serve_http
from warren.settings import ENV_VARS, Settings, parse_amqp_urls

PLACEHOLDER_URL = "amqp://user:secret@rabbitmq:5672/%2F"
EXAMPLE_ENV = K8S / "base" / "credentials.env.example"


def _settings(objects: list[Obj], amqp_url: str = PLACEHOLDER_URL) -> Settings:
    """What a warren container would start with: the ConfigMap plus AMQP_URL."""
    return Settings.from_env({**config(objects), "AMQP_URL": amqp_url})


def _credentials(objects: list[Obj]) -> dict[str, str] | None:
    secret = find(objects, "Secret", "warren-credentials")
    return secret_data(secret) if secret else None


# ---- settings -------------------------------------------------------------------

def test_every_env_name_is_a_setting_the_code_reads(objects: list[Obj]) -> None:
    for owner, _, container in warren_containers(objects):
        unknown = env_names(container, objects) - set(ENV_VARS)
        assert unknown == set(), f"{ident(owner)}: not in warren.settings.ENV_VARS"


def test_the_config_map_only_holds_settings(objects: list[Obj]) -> None:
    assert set(config(objects)) - set(ENV_VARS) == set()


def test_the_settings_parse_as_the_services_would(objects: list[Obj]) -> None:
    amqp_url = (_credentials(objects) or {}).get("AMQP_URL", PLACEHOLDER_URL)
    settings = _settings(objects, amqp_url)  # raises SettingsError on a bad value
    assert settings.metrics_port > 0, "METRICS_PORT=0 would leave the probes nothing to hit"


def test_warren_containers_get_amqp_url_from_a_secret(objects: list[Obj]) -> None:
    for owner, _, container in warren_containers(objects):
        (entry,) = [e for e in container.get("env") or [] if e["name"] == "AMQP_URL"]
        assert "value" not in entry, f"{ident(owner)}: AMQP_URL carries a password"
        assert entry["valueFrom"]["secretKeyRef"]["key"] == "AMQP_URL", ident(owner)


# Shutdown grace against terminationGracePeriodSeconds: tests/k8s/test_scale_down.py.


# ---- ports and probes --------------------------------------------------------------

def test_probes_hit_the_metrics_port_and_the_code_paths(objects: list[Obj]) -> None:
    port = _settings(objects).metrics_port
    assert port == Settings().metrics_port == 9100
    for owner, _, container in warren_containers(objects):
        where = f"{ident(owner)} {container['name']}"
        assert port_number(container, "metrics") == port, where
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, where
            assert port_number(container, get["port"]) == port, where


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_code_serves_the_probe_paths() -> None:
    """The paths the probes use are the ones warren's HTTP server answers."""
    health, port = Health(), _free_port()
    server = serve_http(port, health, host="127.0.0.1")
    assert server is not None
    try:
        assert (_status(port, "/healthz"), _status(port, "/readyz")) == (200, 503)
        health.set_ready(True)
        assert (_status(port, "/healthz"), _status(port, "/readyz")) == (200, 200)
        assert _status(port, "/metrics") == 200
    finally:
        server.shutdown()
        server.server_close()


def test_services_select_pods_and_target_their_ports(objects: list[Obj]) -> None:
    for service in of_kind(objects, "Service"):
        pods = pods_selected(objects, {"matchLabels": service["spec"]["selector"]})
        assert pods, f"{ident(service)} selects no pod in the build"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for owner, template in pods:
                numbers = {port_number(c, target) for c in containers(template["spec"])}
                assert numbers - {None}, f"{ident(service)} port {target} not on {ident(owner)}"


# ---- references and credentials ------------------------------------------------------

def test_every_reference_resolves(variant: str, objects: list[Obj]) -> None:
    external = EXTERNAL.get(variant, frozenset())
    for owner, template in pod_templates(objects):
        for kind, name, key in references(template["spec"]):
            target = find(objects, kind, name)
            if (kind, name) in external:
                assert target is None, f"{kind}/{name} must come from outside kustomize"
                continue
            assert target is not None, f"{ident(owner)} uses {kind}/{name}: not in the build"
            keys = set(target.get("data") or {}) | set(target.get("stringData") or {})
            assert key is None or key in keys, f"{ident(owner)}: {kind}/{name} has no {key}"


def _example_keys() -> set[str]:
    lines = EXAMPLE_ENV.read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


def test_the_example_env_file_documents_every_secret_key_used(objects: list[Obj]) -> None:
    """In production the Secret is made by hand: the example file is its only spec."""
    used = {key for _, t in pod_templates(objects) for kind, name, key in references(t["spec"])
            if kind == "Secret" and name == "warren-credentials" and key}
    for auth in of_kind(objects, "TriggerAuthentication"):
        used |= {r["key"] for r in auth["spec"]["secretTargetRef"]
                 if r["name"] == "warren-credentials"}
    assert used - _example_keys() == set()


def test_production_ships_no_credentials(build: Callable[[str], list[Obj]]) -> None:
    assert of_kind(build("production"), "Secret") == []


def test_the_credentials_agree_with_each_other(variant: str, objects: list[Obj]) -> None:
    creds = _credentials(objects)
    if creds is None:
        assert ("Secret", "warren-credentials") in EXTERNAL.get(variant, frozenset())
        return
    user, password = creds["RABBITMQ_DEFAULT_USER"], creds["RABBITMQ_DEFAULT_PASS"]
    assert user != "guest"
    (amqp,) = parse_amqp_urls(creds["AMQP_URL"])
    parts = urlsplit(amqp)
    assert (parts.username, parts.password) == (user, password), amqp.split("@")[-1]
    _check_amqp_host(objects, parts)


def test_nothing_needs_the_management_api_credentials() -> None:
    """The autoscaler reads Prometheus, not the management API: no URL with a password for
    it in the Secret (docs/KUBERNETES.md, "Credentials")."""
    assert "RABBITMQ_MANAGEMENT_URL" not in _example_keys()


def _check_amqp_host(objects: list[Obj], parts: SplitResult) -> None:
    service = find(objects, "Service", str(parts.hostname).split(".")[0])
    assert service is not None, f"AMQP_URL host {parts.hostname} is no Service"
    assert parts.port in {p["port"] for p in service["spec"]["ports"]}
