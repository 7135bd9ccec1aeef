"""The dashboard checked with Grafana's Foundation SDK, the library that builds it.

The Python SDK has no schema validator of its own; what it has is typed models generated
from Grafana's dashboard schema (for Grafana 11.6, what compose runs) and typed builders.
So the committed JSON must
  - decode into those models and encode back unchanged: a key the schema does not know
    is dropped on the way and the round trip differs;
  - hold in every enum- or Literal-typed field a value the schema allows (decoding alone
    keeps any string: "drawStyle": "wiggly" would pass it);
and the build script must type-check under `mypy --strict`, which is what makes the typed
builders check anything (a plain string where an enum belongs, a wrong builder).
"""

from __future__ import annotations

import enum
import json
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.monitoring.support import BUILD_SCRIPT, DASHBOARD_JSON, ROOT

SDK_MODULES = "grafana_foundation_sdk."


@pytest.fixture(scope="module")
def decoded() -> Dashboard:
    register_default_plugins()  # so panels and queries decode into their typed models
    return Dashboard.from_json(json.loads(DASHBOARD_JSON.read_text(encoding="utf-8")))


def test_json_round_trips_through_the_sdk_models(decoded: Dashboard) -> None:
    original = json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))
    again = json.loads(JSONEncoder().encode(decoded))
    assert again == original, "warren.json has fields Grafana's schema (as the SDK models it) " \
        "does not know: rebuild it with monitoring/grafana/build_dashboard.py"


def test_the_round_trip_drops_an_unknown_field() -> None:
    """...so the test above can fail: a legend option Grafana 11.6's schema lacks."""
    broken = json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))
    panel = next(p for p in broken["panels"] if p["type"] == "timeseries")
    panel["options"]["legend"]["wrapText"] = True
    again = json.loads(JSONEncoder().encode(Dashboard.from_json(broken)))
    assert again != broken


def allowed_values(hint: Any) -> list[set[object]]:
    """The value sets an annotation restricts a field to: enums and Literals, unwrapped."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return [set(hint._value2member_map_)]
    if typing.get_origin(hint) is typing.Literal:
        return [set(typing.get_args(hint))]
    return [values for arg in typing.get_args(hint) for values in allowed_values(arg)]


def schema_violations(obj: Any, path: str, counted: list[int]) -> list[str]:
    """Enum/Literal-typed fields of the decoded models holding a value the type lacks."""
    if isinstance(obj, list):
        return [bad for i, item in enumerate(obj)
                for bad in schema_violations(item, f"{path}[{i}]", counted)]
    if not type(obj).__module__.startswith(SDK_MODULES) or not hasattr(obj, "__dict__"):
        return []
    hints = typing.get_type_hints(type(obj))
    bad: list[str] = []
    for name, value in vars(obj).items():
        for values in allowed_values(hints.get(name)) if value is not None else []:
            counted[0] += 1
            if value not in values:
                bad.append(f"{path}.{name} = {value!r}, not one of {sorted(map(str, values))}")
        bad += schema_violations(value, f"{path}.{name}", counted)
    return bad


def test_every_enum_field_holds_a_value_the_schema_allows(decoded: Dashboard) -> None:
    counted = [0]
    assert not schema_violations(decoded, "dashboard", counted)
    assert counted[0] > 100, f"only {counted[0]} typed fields reached: did decoding change?"


def test_the_checker_catches_a_bad_value(decoded: Dashboard) -> None:
    """The walk above can fail: a timeseries panel with a draw style Grafana lacks."""
    broken = json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))
    panel = next(p for p in broken["panels"] if p["type"] == "timeseries")
    panel["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "wiggly"
    bad = schema_violations(Dashboard.from_json(broken), "dashboard", [0])
    assert len(bad) == 1 and "wiggly" in bad[0], bad


def test_build_script_type_checks_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path),
         str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_sdk_is_not_a_runtime_dependency() -> None:
    """The services' image installs project.dependencies only; the SDK is for building."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any("grafana" in dep for dep in project["dependencies"]), project["dependencies"]
    extras = project["optional-dependencies"]
    assert any(dep.startswith("grafana-foundation-sdk") for dep in extras["monitoring"])
    assert any("monitoring" in dep for dep in extras["dev"]), "dev must pull in the SDK"
