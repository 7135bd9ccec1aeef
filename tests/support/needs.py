"""Skip locally, fail in CI: a missing broker, Docker or tool must never hide a test in CI."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Call at the start of a test or fixture that cannot run without something."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def need_tool(name: str, hint: str = "") -> str:
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed{': ' + hint if hint else ''}")
    assert path is not None
    return path
