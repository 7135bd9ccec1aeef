"""Bad settings beyond tests/unit/test_settings.py: one clear line naming the variable,
exit 78 from a real process, and never the password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from testbed.processes import REPO
from warren.errors import SettingsError
from warren.settings import Settings

SECRET = "Settings-Secret-7c1f"
URL = f"amqp://warren:{SECRET}@127.0.0.1:1"

# (variable, value, what the message must say)
BAD: list[tuple[str, str, str]] = [
    ("AMQP_URL", f"amqp://warren:{SECRET}@[::1/%2F", "Invalid IPv6 URL"),
    ("AMQP_URL", f"amqps://warren:{SECRET}@/%2F", "no host"),
    ("AMQP_URL", f"{URL}/%2F,http://warren:{SECRET}@b/", "scheme must be amqp"),
    ("PREFETCH_MAX", "0", "outside 1..65535"),
    ("RPC_PREFETCH", "0", "outside 1..65535"),
    ("METRICS_PORT", "-1", "outside 0..65535"),
    ("MAX_ATTEMPTS", "1e3", "invalid literal"),
    ("RETRY_DELAY_MS", "-1", "outside 0..86400000"),
    ("TASK_QUEUE", "q" * 201, "longer than 200 bytes"),
    ("RPC_QUEUE", "amq.rpc", "reserved"),
    ("EVENTS_EXCHANGE", "amq.fanout", "reserved"),
    ("TASK_MODULES", "tasks..extra", "not a module name"),
    ("BINDINGS", "weather:topic", "needs a routing key"),
    ("BINDINGS", "amq.topic:topic:#", "not amq.*"),
    ("BINDINGS", "docs:headers:x-match=some,a=b", "x-match must be all or any"),
    ("SHUTDOWN_GRACE_S", "inf", "positive"),
]


@pytest.mark.parametrize(("name", "value", "says"), BAD)
def test_a_bad_value_is_one_line_naming_its_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value})
    message = str(err.value)
    assert message.startswith(f"{name}: ") and says in message, message
    assert SECRET not in message and "\n" not in message


def start(module: str, timeout_s: float = 10, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a service that should stop at once; one still running after that has failed."""
    try:
        return subprocess.run([sys.executable, "-m", module], cwd=REPO, capture_output=True,
                              text=True, timeout=timeout_s, check=False,
                              env={**os.environ, "PYTHONPATH": str(REPO), "METRICS_PORT": "0",
                                   "LOG_FORMAT": "json", "AMQP_URL": f"{URL}/%2F", **env})
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{module} still running after {timeout_s}s: {exc.stderr!r}"[:1500]
                             ) from None


def assert_config_error(result: subprocess.CompletedProcess[str], name: str) -> None:
    assert SECRET not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 78, result.stderr[-1500:]
    assert len(lines) == 1 and lines[0].startswith(f"configuration error: {name}: "), lines


@pytest.mark.parametrize(("module", "name", "value"), [
    ("worker", "BINDINGS", "weather:topic"),
    ("producer", "TASK_QUEUE", "amq.tasks"),
    ("rpc_server", "RPC_PREFETCH", "0"),
    ("worker", "AMQP_URL", f"amqp://warren:{SECRET}@[::1/%2F"),
])
def test_services_refuse_bad_settings_at_start(module: str, name: str, value: str) -> None:
    assert_config_error(start(module, **{name: value}), name)


@pytest.mark.parametrize("query", [
    "heartbeat=abc",
    "no_such_option=1",
    "ssl_options=not-a-dict",
])
def test_an_amqp_url_option_pika_refuses_is_a_configuration_error(query: str) -> None:
    """Settings checks scheme, host and port, but the query is only read by pika's
    URLParameters at connect time: its ValueError escapes as a traceback (exit 1)."""
    result = start("worker", AMQP_URL=f"{URL}/%2F?{query}")
    assert_config_error(result, "AMQP_URL")


def test_an_amqps_url_naming_a_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    """Found here: pika's FileNotFoundError is an OSError, which warren retries as a
    connection failure: the service never starts and never says why, forever."""
    options = quote(repr({"ca_certs": str(tmp_path / "no-such-ca.pem")}), safe="")
    url = f"amqps://warren:{SECRET}@127.0.0.1:1/%2F?ssl_options={options}"
    assert_config_error(start("producer", timeout_s=5, AMQP_URL=url), "AMQP_URL")


def test_task_modules_that_cannot_be_imported_is_a_configuration_error() -> None:
    assert_config_error(start("worker", TASK_MODULES="no_such_tasks_module"), "TASK_MODULES")
