"""Benchmarks on a private RabbitMQ node: `python -m bench [name ...]` (see bench/README.md)."""
