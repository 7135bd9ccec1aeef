"""The docs name warren's metrics as the code defines them (testbed/docs.py)."""

from __future__ import annotations

import re

import pytest

from testbed import docs

# Names that are not warren's own series: the HPA's external metric (prometheus-adapter).
NOT_SERIES = {"warren_queue_backlog"}
SUFFIXES = ("", "_bucket", "_sum", "_count")
WHERE = ("README.md", "docs/*.md", "monitoring/prometheus/**/*.yml",
         "monitoring/grafana/dashboards/*.json", "k8s/**/*.yaml", "bench/*.md")


def test_the_generated_metric_tables_are_current() -> None:
    assert docs.main(["--check"]) == 0, "run: python -m testbed.docs"


def known_series() -> set[str]:
    return {docs.described(m)[0] + suffix for _, m in docs.metrics() for suffix in SUFFIXES}


@pytest.mark.parametrize("pattern", WHERE)
def test_every_metric_a_file_names_exists(pattern: str) -> None:
    known = known_series()
    files = sorted(docs.REPO.glob(pattern))
    assert files, pattern
    for path in files:
        names = set(re.findall(r"\bwarren_[a-z_]+[a-z]", path.read_text()))
        unknown = names - known - NOT_SERIES
        assert not unknown, f"{path.relative_to(docs.REPO)} names {sorted(unknown)}"
