"""Settings from the environment: one frozen object, validated once at start.

Every name here is a contract shared with docker-compose.yml, k8s/ and
monitoring/; tests read `ENV_VARS` to hold those files to it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from warren.amqp.connect import check_url
from warren.bindings import Binding, parse_bindings
from warren.errors import SettingsError

T = TypeVar("T")

QueueType = Literal["classic", "quorum"]
LogFormat = Literal["json", "console", "auto"]
Isolation = Literal["thread", "process"]

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/%2F"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    # repr=False: a Settings object in a log line or traceback must not show a password.
    amqp_urls: tuple[str, ...] = field(default=(DEFAULT_AMQP_URL,), repr=False)
    task_queue: str = "task_queue"
    rpc_queue: str = "rpc_queue"
    # 0 = unlimited (the broker's round-robin); "auto" sizes it from the observed task time.
    prefetch: int | Literal["auto"] = 1
    prefetch_max: int = 64
    rpc_prefetch: int = 100  # additions are instant: a deeper window only saves round trips
    queue_type: QueueType = "classic"
    max_attempts: int = 3
    retry_delay_ms: int = 5000
    shutdown_grace_s: float = 25.0
    metrics_port: int = 9100
    log_format: LogFormat = "auto"
    log_level: str = "INFO"
    dot_seconds: float = 1.0
    max_body_bytes: int = 1_048_576
    worker_id: str = ""
    events_exchange: str = "warren.events"
    bindings: tuple[Binding, ...] = ()
    task_modules: tuple[str, ...] = ()
    # Time limits, isolation, recycling (worker/lanes.py, worker/child.py). 0 turns a limit off.
    task_time_limit_s: float = 0.0
    task_time_limit_grace_s: float = 5.0
    task_warn_after_s: float = 300.0
    task_isolation: Isolation = "thread"
    concurrency: int = 1
    max_tasks_per_child: int = 0
    max_memory_per_child_mb: int = 0

    @property
    def redacted_urls(self) -> tuple[str, ...]:
        return tuple(redact_url(url) for url in self.amqp_urls)

    @property
    def retry_queue(self) -> str:
        return f"{self.task_queue}.retry"

    @property
    def dead_queue(self) -> str:
        return f"{self.task_queue}.dead"

    @property
    def status_exchange(self) -> str:
        """Where workers say every few seconds how they are (`warren status`); beside the
        task events, so that their subscribers see task events only. "" with events off."""
        return f"{self.events_exchange}.status" if self.events_exchange else ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {name: _read(env, name, parse) for name, (_, parse) in _FIELDS.items()}
        kwargs = {_FIELDS[name][0]: value for name, value in values.items() if value is not None}
        settings = cls(**kwargs)
        if not settings.worker_id:
            settings = _with_worker_id(settings)
        return settings


def _with_worker_id(settings: Settings) -> Settings:
    return replace(settings, worker_id=f"{socket.gethostname()}-{os.getpid()}")


def _read(env: Mapping[str, str], name: str, parse: Callable[[str], object]) -> object | None:
    raw = env.get(name)
    if raw is not None and raw.strip() == "" and name in EMPTY_MEANS_OFF:
        return ""
    if raw is None or raw.strip() == "":
        return None
    try:
        return parse(raw.strip())
    except (ValueError, TypeError) as exc:
        # The parsers never echo a URL's password back (see parse_amqp_urls).
        raise SettingsError(f"{name}: {exc}") from None


def parse_amqp_urls(raw: str) -> tuple[str, ...]:
    urls = tuple(part.strip() for part in raw.split(",") if part.strip())
    for url in urls:
        parts = urlsplit(url)
        if "@" in url.partition("://")[2] and "@" not in parts.netloc:
            raise ValueError(f"{redact_url(url)!r}: a '#', '/' or '?' in the user or "
                             "password must be percent-encoded (%23, %2F, %3F)")
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"scheme must be amqp:// or amqps://, got {redact_url(url)!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {redact_url(url)!r}")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"bad port in {redact_url(url)!r}") from None
        try:  # the query options too (heartbeat=, ssl_options=, ...), as pika will read them
            check_url(url)
        except ValueError as exc:
            raise ValueError(f"{redact_url(url)!r}: {exc}") from None
    if not urls:
        raise ValueError("no URL given")
    return urls


def redact_url(url: str) -> str:
    """The URL with everything between `user:` and the host's `@` replaced, safe to log.

    Cut at the last `@` of the URL's authority-looking part rather than parsed: a password
    with an unescaped `#`, `/` or `?` ends a parsed netloc early, and then parsing finds no
    password at all (RFC 3986 wants them percent-encoded; users type them anyway)."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme, or a mistyped one ("amqp:/"): the same cut, on the whole
        scheme, sep, rest = "", "", url
    if "@" not in rest:
        return url
    userinfo, host = rest.rsplit("@", 1)
    head, colon, _password = userinfo.partition(":")  # a user has no ":"; a password may
    if not colon:
        return url
    return f"{scheme}{sep}{head}:***@{host}"


def _queue_name(raw: str) -> str:
    if raw.startswith("amq."):
        raise ValueError(f"{raw!r}: names starting with 'amq.' are reserved by the broker")
    if len(raw.encode()) > 200:
        raise ValueError("longer than 200 bytes (the .retry/.dead queues must fit in 255)")
    return raw


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _prefetch(raw: str) -> int | Literal["auto"]:
    if raw.lower() == "auto":
        return "auto"
    return _int_in(0, 65535)(raw)


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"must be a positive number of seconds, got {raw!r}")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not 0 <= value < float("inf"):
        raise ValueError(f"must be zero or more, got {raw!r}")
    return value


def _one_of(*choices: str, upper: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.upper() if upper else raw.lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _text(raw: str) -> str:
    return raw


def _exchange_name(raw: str) -> str:
    """warren declares it, and `<name>.status` beside it: the broker reserves `amq.*`."""
    if raw.startswith("amq."):
        raise ValueError(f"{raw!r}: names starting with 'amq.' are reserved by the broker "
                         "(warren declares this exchange and '<name>.status')")
    if len(raw.encode()) > 248:
        raise ValueError("longer than 248 bytes ('<name>.status' must fit in 255)")
    return raw


def _module_list(raw: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    for name in names:
        if not all(piece.isidentifier() for piece in name.split(".")):
            raise ValueError(f"{name!r} is not a module name")
    return names


_FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "AMQP_URL": ("amqp_urls", parse_amqp_urls),
    "TASK_QUEUE": ("task_queue", _queue_name),
    "RPC_QUEUE": ("rpc_queue", _queue_name),
    "PREFETCH": ("prefetch", _prefetch),
    "PREFETCH_MAX": ("prefetch_max", _int_in(1, 65535)),
    "RPC_PREFETCH": ("rpc_prefetch", _int_in(1, 65535)),
    "QUEUE_TYPE": ("queue_type", _one_of("classic", "quorum")),
    "MAX_ATTEMPTS": ("max_attempts", _int_in(1, 1000)),
    "RETRY_DELAY_MS": ("retry_delay_ms", _int_in(0, 86_400_000)),
    "SHUTDOWN_GRACE_S": ("shutdown_grace_s", _positive_float),
    "METRICS_PORT": ("metrics_port", _int_in(0, 65535)),
    "LOG_FORMAT": ("log_format", _one_of("json", "console", "auto")),
    "LOG_LEVEL": ("log_level", _one_of(*LOG_LEVELS, upper=True)),
    "DOT_SECONDS": ("dot_seconds", _non_negative_float),
    "MAX_BODY_BYTES": ("max_body_bytes", _int_in(1, 128 * 1024 * 1024)),
    "WORKER_ID": ("worker_id", _text),
    "EVENTS_EXCHANGE": ("events_exchange", _exchange_name),
    "BINDINGS": ("bindings", parse_bindings),
    "TASK_MODULES": ("task_modules", _module_list),
    "TASK_TIME_LIMIT_S": ("task_time_limit_s", _non_negative_float),
    "TASK_TIME_LIMIT_GRACE_S": ("task_time_limit_grace_s", _positive_float),
    "TASK_WARN_AFTER_S": ("task_warn_after_s", _non_negative_float),
    "TASK_ISOLATION": ("task_isolation", _one_of("thread", "process")),
    "CONCURRENCY": ("concurrency", _int_in(1, 256)),
    "MAX_TASKS_PER_CHILD": ("max_tasks_per_child", _int_in(0, 10**9)),
    "MAX_MEMORY_PER_CHILD_MB": ("max_memory_per_child_mb", _int_in(0, 10**7)),
}

ENV_VARS: tuple[str, ...] = tuple(_FIELDS)
# Set but empty turns these off; for every other variable an empty value means the default.
EMPTY_MEANS_OFF = frozenset({"EVENTS_EXCHANGE"})
