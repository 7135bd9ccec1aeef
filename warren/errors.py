"""warren's own error hierarchy, so callers never have to know pika's exceptions."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, named after sysexits(3) where one fits."""

    OK = 0
    PARTIAL = 1  # the run finished but not everything was confirmed or routed
    USAGE = 64
    UNAVAILABLE = 69  # the broker could not be reached or refused our credentials
    CONFIG = 78


class WarrenError(Exception):
    """Base of every error warren raises on purpose."""


class SettingsError(WarrenError):
    """A setting from the environment is missing or invalid; the message names the variable."""


class BrokerError(WarrenError):
    """Something went wrong talking to RabbitMQ."""


class ConnectionLost(BrokerError):
    """The connection or channel went away; reconnecting is the right answer."""


class AuthenticationFailed(BrokerError):
    """The broker refused our credentials or vhost; retrying forever will not help."""


class MalformedMessage(WarrenError):
    """A message that can never be processed as sent; it is parked with this reason."""


class TaskFailed(WarrenError):
    """A task raised; it may succeed on a later attempt."""
