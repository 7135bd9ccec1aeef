# Thin wrappers over scripts/: every target works the same without make.
.PHONY: local up test lint bench partition

local:  ## a whole cluster on this machine (private RabbitMQ, 4 workers, producer, live view)
	scripts/local.sh $(ARGS)

up:     ## docker compose up --build --scale worker=4
	scripts/compose-up.sh $(ARGS)

test:   ## ruff, then every test suite against a real broker
	scripts/test.sh $(ARGS)

lint:
	scripts/bootstrap.sh && .venv/bin/ruff check .

bench:  ## benchmarks: tables, JSON and plots in bench/results/ (drain alone: 17 minutes here, 2026-12-07)
	scripts/bootstrap.sh && .venv/bin/pip install -q -e '.[bench]' && .venv/bin/python -m bench $(ARGS)

partition:  ## network partitions: 3-node clusters on test hosts (netns), full plan, 3.10 and 4.3 side by side (root; ~40 min)
	scripts/partition.sh $(ARGS)
