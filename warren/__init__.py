"""warren: the core every service shares (settings, AMQP, topology, messages, logs, metrics)."""

__version__ = "0.1.0"
