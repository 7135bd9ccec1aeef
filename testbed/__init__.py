"""Development and test tooling: never shipped, never copied into the image.

Private RabbitMQ nodes (`testbed.broker`), clusters of them (`testbed.cluster`), warren's
services as subprocesses (`testbed.processes`), the chaos harness (`testbed.chaos`) and
`make local` (`python -m testbed.local_cluster`). The tests, the benchmarks and the
scripts share these instead of importing each other.
"""
