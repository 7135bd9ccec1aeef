"""promtool: the compose config and the rules are valid, and the rule unit tests pass.

Every test that runs promtool runs twice, under promtool 2.x (Debian's, what the
stand-in image and older setups run) and 3.x (what users pull): the files must hold
for both. The mutation tests prove those unit tests can fail: every alert, replaced by one that
never fires and by one that always fires, must break `promtool test rules`. So each
alert has at least one case where it fires and one where it must stay quiet.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.monitoring.prom_tools import MAJORS, need_release
from tests.monitoring.support import (
    PROMETHEUS_DIR,
    PROMETHEUS_YML,
    alert_names,
    rule_files,
    rule_test_files,
)

NEVER = "vector(0) > 1"
ALWAYS = "vector(1)"


@pytest.fixture(scope="module", params=MAJORS, ids=lambda major: f"promtool{major}")
def promtool(request: pytest.FixtureRequest) -> str:
    return need_release(request.param).promtool


def run(promtool: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False, cwd=cwd)


def test_check_config_finds_the_rules(promtool: str) -> None:
    result = run(promtool, "check", "config", PROMETHEUS_YML)
    assert result.returncode == 0, result.stdout + result.stderr
    # `rule_files: [rules/*.yml]` is relative to prometheus.yml: the glob must match here.
    found = len(rule_files())
    assert found >= 1
    assert f"SUCCESS: {found} rule files found" in result.stdout + result.stderr


def test_check_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", *rule_files())
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool: str) -> None:
    assert rule_test_files(), "no promtool unit tests in monitoring/prometheus/tests"
    result = run(promtool, "test", "rules", *rule_test_files())
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_expected_alerts_exist() -> None:
    names = alert_names()
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert {
        "WarrenTaskBacklogGrowing", "WarrenQueueNoConsumers", "WarrenUnackedStuck",
        "WarrenParkedMessages", "WarrenWorkerDown", "WarrenRpcErrorRate",
        "WarrenRpcLatencyP99High",
    } <= set(names)


def replace_expr(rules_text: str, alert: str, new_expr: str) -> str:
    """The rules file with one alert's `expr:` (one line or a block scalar) replaced."""
    lines = rules_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"- alert: {alert}")
    at = next(i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("expr:"))
    indent = len(lines[at]) - len(lines[at].lstrip())
    end = at + 1
    while end < len(lines) and (not lines[end].strip()
                                or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    lines[at:end] = [" " * indent + f"expr: {new_expr}"]
    return "\n".join(lines) + "\n"


def test_replace_expr_handles_both_forms() -> None:
    text = ("      - alert: A\n        expr: >-\n          up\n          == 0\n        for: 1m\n"
            "      - alert: B\n        expr: up == 0\n        for: 1m\n")
    assert replace_expr(text, "A", "X") == (
        "      - alert: A\n        expr: X\n        for: 1m\n"
        "      - alert: B\n        expr: up == 0\n        for: 1m\n")
    assert "expr: Y\n        for: 1m\n" in replace_expr(text, "B", "Y")


@pytest.mark.parametrize("mutant", [NEVER, ALWAYS], ids=["never-fires", "always-fires"])
@pytest.mark.parametrize("alert", alert_names())
def test_unit_tests_catch_a_broken_alert(promtool: str, tmp_path: Path, alert: str,
                                         mutant: str) -> None:
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    for path in (copy / "rules").glob("*.yml"):
        text = path.read_text()
        if f"- alert: {alert}\n" in text:
            path.write_text(replace_expr(text, alert, mutant))
    assert run(promtool, "check", "rules", *sorted((copy / "rules").glob("*.yml"))).returncode == 0
    own_tests = [path for path in sorted((copy / "tests").glob("*.yml"))
                 if f"alertname: {alert}\n" in path.read_text()]
    assert own_tests, f"no promtool unit test names {alert}"
    result = run(promtool, "test", "rules", *own_tests)
    assert result.returncode != 0, (
        f"{alert} with expr `{mutant}` still passes every promtool test: "
        f"it needs a case where it {'fires' if mutant == NEVER else 'stays quiet'}")
