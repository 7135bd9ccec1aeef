"""The deploy files, read as data: no guest off loopback, credentials only from the
environment or Secrets, containers non-root with read-only root filesystems.

Sources: docker-compose.yml (as written, plus .env.example), deploy/rabbitmq/,
k8s/ (every kustomize variant, built) and the Dockerfile.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from testbed.processes import REPO
from tests.k8s.manifests import (
    Obj,
    all_containers,
    generated,
    ident,
    parse_conf,
    secret_data,
    warren_containers,
)

APP_SERVICES = ("producer", "worker", "rpc_server")
# An environment variable that holds a credential by its name.
CREDENTIAL_NAME = re.compile(r"(PASS|PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY)$")
# user:password@ inside a URL.
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://(?P<user>\$\{[^}]*\}|[^/\s:@]+)"
                             r":(?P<password>\$\{[^}]*\}|[^@\s]+)@")
# ${VAR:-default}, the only way compose may carry a credential.
DEFAULTED_VARIABLE = re.compile(r"^\$\{(?P<name>[A-Z][A-Z0-9_]*):-(?P<default>[^}]*)\}$")
DEV_ONLY = "dev-only"


def rabbitmq_configs(k8s_builds: dict[str, list[Obj]]) -> dict[str, str]:
    """Every rabbitmq.conf text we ship, by where it comes from."""
    configs = {str(p.relative_to(REPO)): p.read_text()
               for p in sorted((REPO / "deploy").rglob("*.conf"))}
    configs |= {str(p.relative_to(REPO)): p.read_text()
                for p in sorted((REPO / "k8s").rglob("rabbitmq.conf"))}
    for name, objects in k8s_builds.items():
        config_map = generated(objects, "ConfigMap", "rabbitmq-config")
        if config_map is not None:
            configs[f"{name}: ConfigMap rabbitmq-config"] = config_map["data"]["rabbitmq.conf"]
        for cluster in (o for o in objects if o["kind"] == "RabbitmqCluster"):
            extra = cluster["spec"].get("rabbitmq", {}).get("additionalConfig", "")
            configs[f"{name}: {ident(cluster)} additionalConfig"] = extra
    return configs


# ---- (a) guest never leaves loopback; a real user is seeded ------------------------

def test_every_rabbitmq_config_keeps_guest_on_loopback(k8s_builds: dict[str, list[Obj]]) -> None:
    configs = rabbitmq_configs(k8s_builds)
    assert len(configs) >= 4, configs.keys()  # compose, k8s base, its ConfigMap, operator
    for where, text in configs.items():
        conf = parse_conf(text)
        assert conf.get("loopback_users") != "none", where
        assert conf.get("loopback_users.guest") == "true", (
            f"{where}: the official image sets loopback_users.guest = false; "
            "each config must set it back to true")
        assert conf.get("default_user", "") != "guest", where
        assert "default_pass" not in conf, f"{where}: a password in a config file"


def test_no_deploy_file_lets_guest_in_from_the_network() -> None:
    opening = re.compile(r"^\s*loopback_users(\.guest)?\s*=\s*(false|none)\s*$",
                         re.MULTILINE | re.IGNORECASE)
    checked = 0
    for root in ("deploy", "k8s", "monitoring"):
        for path in (REPO / root).rglob("*"):
            if path.is_file() and path.suffix in ("", ".conf", ".yaml", ".yml", ".env"):
                checked += 1
                assert not opening.search(path.read_text(errors="replace")), path
    assert not opening.search((REPO / "docker-compose.yml").read_text())
    assert checked > 10


def test_compose_seeds_a_real_user(compose: dict[str, Any]) -> None:
    env = compose["services"]["rabbitmq"]["environment"]
    user = DEFAULTED_VARIABLE.match(env["RABBITMQ_DEFAULT_USER"])
    assert user and user["default"] not in ("", "guest")
    assert DEFAULTED_VARIABLE.match(env["RABBITMQ_DEFAULT_PASS"])
    volumes = " ".join(compose["services"]["rabbitmq"]["volumes"])
    # Read after the image's conf.d/10-defaults.conf, which turns the loopback rule off.
    assert "deploy/rabbitmq/rabbitmq.conf:/etc/rabbitmq/conf.d/20-" in volumes


def test_k8s_seeds_a_real_user_from_the_secret(k8s_builds: dict[str, list[Obj]]) -> None:
    for name, objects in k8s_builds.items():
        broker = [(owner, c) for owner, _, c in all_containers(objects)
                  if c["name"] == "rabbitmq"]
        for owner, container in broker:
            env = {e["name"]: e for e in container.get("env") or []}
            for key in ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"):
                assert "secretKeyRef" in env[key].get("valueFrom", {}), (name, ident(owner), key)
        secret = generated(objects, "Secret", "warren-credentials")
        if secret is not None:
            assert secret_data(secret)["RABBITMQ_DEFAULT_USER"] not in ("", "guest"), name
        if not broker:  # the operator's RabbitmqCluster makes its own (random) default user
            assert any(o["kind"] == "RabbitmqCluster" for o in objects), name


def test_no_client_logs_in_as_guest(compose: dict[str, Any],
                                    k8s_builds: dict[str, list[Obj]]) -> None:
    for service in APP_SERVICES:
        url = interpolate(compose["services"][service]["environment"]["AMQP_URL"])
        match = URL_CREDENTIALS.search(url)
        assert match and match["user"] != "guest", service
    for name, objects in k8s_builds.items():
        secret = generated(objects, "Secret", "warren-credentials")
        for key, value in (secret_data(secret) if secret else {}).items():
            match = URL_CREDENTIALS.search(value)
            assert not match or match["user"] != "guest", (name, key)


# ---- (b) credentials only from the environment or Secrets ---------------------------

def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set: the defaults."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def compose_environments(compose: dict[str, Any]) -> list[tuple[str, str, str]]:
    found = []
    for service, spec in compose["services"].items():
        env = spec.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        found += [(service, key, str(value)) for key, value in env.items()]
    return found


def documented_dev_only() -> set[str]:
    """Variables .env.example lists under its DEVELOPMENT ONLY credentials heading."""
    text = (REPO / ".env.example").read_text()
    section = text.split("DEVELOPMENT ONLY", 1)[1].split("\n# ---", 1)[0]
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", section, re.MULTILINE))


def test_compose_passwords_are_dev_only_defaults_of_variables(compose: dict[str, Any]) -> None:
    dev_only = documented_dev_only()
    checked = 0
    for service, key, value in compose_environments(compose):
        secrets = []
        if CREDENTIAL_NAME.search(key):
            secrets.append(value)
        secrets += [m["password"] for m in URL_CREDENTIALS.finditer(value)]
        for secret in secrets:
            checked += 1
            variable = DEFAULTED_VARIABLE.match(secret)
            assert variable, f"{service}.{key}: a literal credential {secret!r}"
            assert DEV_ONLY in variable["default"], f"{service}.{key}: default not dev-only"
            assert variable["name"] in dev_only, (
                f"{service}.{key}: {variable['name']} is not in .env.example's "
                "DEVELOPMENT ONLY section")
    assert checked >= 5  # the broker, three app services' AMQP_URL, Grafana


def test_compose_has_no_literal_credentials_anywhere() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for match in URL_CREDENTIALS.finditer(text):
        assert match["password"].startswith("${"), match.group(0)
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and CREDENTIAL_NAME.search(key.strip()):
            assert DEFAULTED_VARIABLE.match(value.strip().strip("\"'")), line


def _credential_like(name: str, value: str) -> bool:
    return bool(CREDENTIAL_NAME.search(name) or URL_CREDENTIALS.search(value)
                or name in ("AMQP_URL", "RABBITMQ_MANAGEMENT_URL"))


def test_k8s_credentials_come_only_from_secrets(k8s_builds: dict[str, list[Obj]]) -> None:
    for name, objects in k8s_builds.items():
        for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
            for key, value in (config_map.get("data") or {}).items():
                if key.endswith(".conf"):
                    continue  # rabbitmq.conf, checked above
                assert not _credential_like(key, str(value)), (name, ident(config_map), key)
        for owner, _, container in all_containers(objects):
            for entry in container.get("env") or []:
                if "value" in entry:
                    assert not _credential_like(entry["name"], str(entry["value"])), (
                        name, ident(owner), entry["name"])
                elif _credential_like(entry["name"], ""):
                    assert "secretKeyRef" in entry.get("valueFrom", {}), (
                        name, ident(owner), entry["name"])
        for _, _, container in warren_containers(objects):
            [amqp] = [e for e in container.get("env") or [] if e["name"] == "AMQP_URL"]
            assert amqp["valueFrom"]["secretKeyRef"]["name"] == "warren-credentials"
        for auth in (o for o in objects if o["kind"] == "TriggerAuthentication"):
            assert auth["spec"].get("secretTargetRef"), (name, ident(auth))


def test_only_the_dev_secret_is_in_git_and_it_says_so(k8s_builds: dict[str, list[Obj]]) -> None:
    """Production builds without the Secret (made out of band); dev's is public, marked so."""
    production = k8s_builds["production"]
    assert generated(production, "Secret", "warren-credentials") is None
    assert not [o for o in production if o["kind"] == "Secret"]
    dev = generated(k8s_builds["dev"], "Secret", "warren-credentials")
    assert dev is not None
    for key, value in secret_data(dev).items():
        if _credential_like(key, value):
            assert DEV_ONLY in value, key
    for path in (REPO / "k8s").rglob("*"):
        if path.is_file() and "secret" in path.name.lower():
            pytest.fail(f"{path}: a secret file in git")  # only *.env.example may carry any


# ---- (e) non-root, read-only root filesystems -------------------------------------------

def final_stage(dockerfile: str) -> str:
    return dockerfile.rsplit("\nFROM ", 1)[1]


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    stage = final_stage((REPO / "Dockerfile").read_text())
    users = re.findall(r"^USER\s+(\S+)", stage, re.MULTILINE)
    assert users, "the final stage sets no USER: it would run as root"
    uid = users[-1].split(":", 1)[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]  # numeric: runAsNonRoot can verify it
    after = stage.split(f"USER {users[-1]}", 1)[1]
    assert not re.search(r"^(RUN|COPY|ADD)\s", after, re.MULTILINE), "work done after USER"


def test_compose_app_services_get_no_extra_privileges(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        spec = compose["services"][name]
        assert str(spec.get("user", "10001")).split(":")[0] not in ("0", "root"), name
        assert not spec.get("privileged"), name
        assert not spec.get("cap_add"), name
        assert spec.get("network_mode") != "host" and spec.get("pid") != "host", name
        for mount in spec.get("volumes") or []:
            assert "docker.sock" not in str(mount), name


def test_compose_app_services_have_read_only_root_filesystems(
        compose: dict[str, Any]) -> None:
    """k8s runs them with readOnlyRootFilesystem (tests/k8s/test_policy.py); compose
    should too. tests/security/test_container.py shows the image works that way."""
    for name in APP_SERVICES:
        spec = compose["services"][name]
        assert spec.get("read_only") is True, name
        tmpfs = spec.get("tmpfs") or []
        assert any(str(t).split(":", 1)[0] == "/tmp" for t in tmpfs), name
        assert "no-new-privileges:true" in (spec.get("security_opt") or []), name


def test_k8s_containers_are_non_root_with_read_only_root_filesystems(
        k8s_builds: dict[str, list[Obj]]) -> None:
    for name, objects in k8s_builds.items():
        for owner, pod, container in all_containers(objects):
            context = container.get("securityContext") or {}
            pod_context = pod.get("securityContext") or {}
            non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
            assert non_root is True, (name, ident(owner), container["name"])
            assert context.get("readOnlyRootFilesystem") is True, (name, ident(owner))
            assert context.get("allowPrivilegeEscalation") is False, (name, ident(owner))


def test_secret_values_in_builds_are_base64_not_plain(k8s_builds: dict[str, list[Obj]]) -> None:
    """kustomize's secretGenerator writes `data` (base64); a `stringData` with a real
    password would be a copy-paste from somewhere it should not be."""
    for name, objects in k8s_builds.items():
        for secret in (o for o in objects if o["kind"] == "Secret"):
            assert not secret.get("stringData"), (name, ident(secret))
            for value in (secret.get("data") or {}).values():
                base64.b64decode("".join(value.split()), validate=True)


def test_no_private_keys_or_certificates_are_committed() -> None:
    pem = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
    for root in ("deploy", "k8s", "monitoring", "warren", "producer", "worker", "rpc_server"):
        for path in Path(REPO / root).rglob("*"):
            if path.is_file() and path.stat().st_size < 1_000_000:
                assert not pem.search(path.read_text(errors="replace")), path
