"""warren's own error hierarchy, so callers never have to know pika's exceptions."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, named after sysexits(3) where one fits."""

    OK = 0
    PARTIAL = 1  # the run finished but not everything was confirmed or routed
    USAGE = 64
    DATAERR = 65  # the broker refused a message as it is (too large, say): resending cannot help
    UNAVAILABLE = 69  # the broker could not be reached or refused our credentials
    NOPERM = 77  # the broker refused an operation to this user (403 ACCESS_REFUSED)
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


class Refused(BrokerError):
    """The broker refused something that will be refused again however often it is retried.

    A queue that exists with other arguments (406), a missing exchange (404), a missing
    permission (403), a message over the broker's size limit (406). `exit_code` is what a
    service ends with; the message names the cause in one line.
    """

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.CONFIG) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class MalformedMessage(WarrenError):
    """A message that can never be processed as sent; it is parked with this reason."""
