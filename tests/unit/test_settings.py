from __future__ import annotations

import pytest

from warren.errors import SettingsError
from warren.settings import ENV_VARS, Settings, redact_url

SECRET = "pa55-Very-Secret"


def test_defaults_work_without_any_environment() -> None:
    s = Settings.from_env({})
    assert (s.task_queue, s.rpc_queue, s.prefetch, s.queue_type) == (
        "task_queue", "rpc_queue", 1, "classic")
    assert (s.retry_queue, s.dead_queue) == ("task_queue.retry", "task_queue.dead")
    assert s.metrics_port == 9100
    assert s.worker_id


def test_amqp_url_may_list_several_nodes() -> None:
    s = Settings.from_env({"AMQP_URL": "amqp://u:p@a:5672/%2F, amqps://u:p@b:5671/v"})
    assert s.amqp_urls == ("amqp://u:p@a:5672/%2F", "amqps://u:p@b:5671/v")


@pytest.mark.parametrize(("name", "value", "says"), [
    ("AMQP_URL", f"http://user:{SECRET}@host/", "scheme must be amqp"),
    ("AMQP_URL", f"amqp://user:{SECRET}@host:99999/", "bad port"),
    ("AMQP_URL", f"amqp://user:{SECRET}@/", "no host"),
    ("AMQP_URL", " , ", "no URL given"),
    ("PREFETCH", "ten", "invalid literal"),
    ("PREFETCH", "-1", "outside 0..65535"),
    ("QUEUE_TYPE", "stream", "must be one of classic, quorum"),
    ("MAX_ATTEMPTS", "0", "outside 1..1000"),
    ("RETRY_DELAY_MS", "1.5", "invalid literal"),
    ("SHUTDOWN_GRACE_S", "0", "positive"),
    ("SHUTDOWN_GRACE_S", "nan", "positive"),
    ("METRICS_PORT", "70000", "outside 0..65535"),
    ("LOG_FORMAT", "xml", "must be one of json, console, auto"),
    ("LOG_LEVEL", "LOUD", "must be one of"),
    ("TASK_QUEUE", "amq.tasks", "reserved"),
    ("DOT_SECONDS", "-0.5", "zero or more"),
    ("MAX_BODY_BYTES", "0", "outside"),
    ("TASK_MODULES", "my-tasks", "not a module name"),
])
def test_a_bad_value_names_its_variable_and_hides_passwords(name: str, value: str,
                                                            says: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value})
    message = str(err.value)
    assert message.startswith(f"{name}: ")
    assert says in message
    assert SECRET not in message
    assert "\n" not in message


def test_repr_and_redaction_never_show_the_password() -> None:
    s = Settings.from_env({"AMQP_URL": f"amqp://user:{SECRET}@host:5672/%2F"})
    assert SECRET not in repr(s)
    assert s.redacted_urls == ("amqp://user:***@host:5672/%2F",)
    assert redact_url("amqp://host/") == "amqp://host/"


@pytest.mark.parametrize("odd", ["pa#ss", "pa/ss", "pa?ss", "pa#s/s?x@y"])
def test_a_password_with_unescaped_url_characters_never_shows(odd: str) -> None:
    """urlsplit ends the netloc at an unescaped '#', '/' or '?': the URL then looks
    password-less, and an error that quoted it showed the password (seen: "bad port in")."""
    url = f"amqp://user:{odd}{SECRET}@127.0.0.1:5672/%2F"
    assert SECRET not in redact_url(url) and odd not in redact_url(url)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"AMQP_URL": url})
    assert SECRET not in str(caught.value) and odd.split("@")[0] not in str(caught.value)
    assert "percent-encoded" in str(caught.value)


@pytest.mark.parametrize("url", [f"warren:{SECRET}@127.0.0.1:5672/%2F",
                                 f"amqp:/warren:{SECRET}@127.0.0.1",
                                 f"amqp://u:p@h/%2F,warren:{SECRET}@h2"])
def test_a_url_without_its_scheme_never_shows_the_password(url: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"AMQP_URL": url})
    assert SECRET not in str(caught.value)


def test_a_password_with_an_at_sign_is_redacted_whole() -> None:
    assert redact_url(f"amqp://user:p@ss{SECRET}@host/%2F") == "amqp://user:***@host/%2F"


def test_a_blank_value_means_the_default() -> None:
    assert Settings.from_env({"PREFETCH": "  "}).prefetch == 1


def test_every_setting_has_a_documented_env_name() -> None:
    assert {"AMQP_URL", "TASK_QUEUE", "RPC_QUEUE", "PREFETCH", "QUEUE_TYPE", "MAX_ATTEMPTS",
            "RETRY_DELAY_MS", "SHUTDOWN_GRACE_S", "METRICS_PORT", "LOG_FORMAT",
            "LOG_LEVEL"} <= set(ENV_VARS)


def test_an_empty_events_exchange_turns_events_off() -> None:
    assert Settings.from_env({"EVENTS_EXCHANGE": ""}).events_exchange == ""
    assert Settings.from_env({"EVENTS_EXCHANGE": "  "}).events_exchange == ""
    assert Settings.from_env({}).events_exchange == "warren.events"
