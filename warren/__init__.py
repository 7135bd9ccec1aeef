"""warren: the core that every service shares (settings, AMQP, topology, messages, logs, metrics)."""

__version__ = "0.1.0"
