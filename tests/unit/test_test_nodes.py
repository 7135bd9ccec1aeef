"""The test-node tooling's own logic (testbed/broker*.py), without starting a node."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.broker import (
    DENIED_FEATURES,
    VERSION_VAR,
    Connection,
    HostRuntime,
    LocalBroker,
    parse_connections,
    runtime_for,
    selected_version,
)
from testbed.broker_container import DATA, IMAGE_VAR, ContainerRuntime, _in_container

# `rabbitmqctl list_connections -q --no-table-headers client_properties pid ssl`, as
# RabbitMQ 4.3.6 printed it (3.10.8 prints the same shape).
LISTED = (
    '[{"product","Pika Python Client Library"},{"capabilities",[{"basic.nack",true}]},'
    '{"connection_name","worker:w0"}]\t<warren-26439@localhost.1796082286.996.0>\tfalse\n'
    '[{"product","Pika Python Client Library"},{"version","1.4.4"}]'
    '\t<warren-23706@localhost.1796082294.824.0>\ttrue\n'
)


@dataclass
class FakeRuntime(HostRuntime):
    """A host runtime claiming another major version: only the config is looked at."""

    major: int = 4


def test_connections_are_parsed_with_name_node_and_tls() -> None:
    assert parse_connections(LISTED) == [
        Connection("worker:w0", "warren-26439@localhost", False),
        Connection(None, "warren-23706@localhost", True),
    ]
    assert parse_connections("") == []


@pytest.mark.parametrize(("major", "denied"), [(4, True), (3, False)])
def test_only_4x_nodes_get_every_deprecated_feature_denied(
        tmp_path: Path, major: int, denied: bool) -> None:
    node = LocalBroker(tmp_path, runtime=FakeRuntime(major=major))
    node._write_config()
    conf = (tmp_path / "rabbitmq.conf").read_text()
    for name in ("transient_nonexcl_queues", "management_metrics_collection", "global_qos"):
        assert name in DENIED_FEATURES
    lines = [f"deprecated_features.permit.{name} = false" for name in DENIED_FEATURES]
    assert all((line in conf.splitlines()) is denied for line in lines), conf


def test_files_the_config_names_are_copied_where_the_container_sees_them(tmp_path: Path) -> None:
    key = tmp_path / "certs" / "server.key"
    key.parent.mkdir()
    key.write_text("secret")
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(f"ssl_options.keyfile = {key}\nlog.dir = /no/such/dir\n"
                    "listeners.tcp.default = 127.0.0.1:5672\n")
    data = tmp_path / "data"
    data.mkdir()
    out = _in_container(conf, data)
    assert f"ssl_options.keyfile = {DATA}/host-files/ssl_options.keyfile" in out
    assert "log.dir = /no/such/dir" in out  # not a file: left as it is
    assert (data / "host-files" / "ssl_options.keyfile").read_text() == "secret"
    key.write_text("renewed")
    _in_container(conf, data)  # a restart: the same file, up to date, no second copy
    assert [p.name for p in (data / "host-files").iterdir()] == ["ssl_options.keyfile"]
    assert (data / "host-files" / "ssl_options.keyfile").read_text() == "renewed"


def test_the_setting_picks_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VERSION_VAR, raising=False)
    monkeypatch.delenv(IMAGE_VAR, raising=False)
    assert selected_version() == "3.10"
    assert isinstance(runtime_for(), HostRuntime)
    monkeypatch.setenv(VERSION_VAR, "4.3")
    runtime = runtime_for()
    assert isinstance(runtime, ContainerRuntime)
    assert (runtime.image, runtime.major) == ("local/rabbitmq:4.3-management", 4)
    monkeypatch.setenv(VERSION_VAR, "4")
    with pytest.raises(ValueError, match=r"expected one of 3\.10, 4\.3"):
        selected_version()
