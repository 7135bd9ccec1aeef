"""Which Prometheus releases this machine has: one 2.x and one 3.x, each with its promtool.

2.x is Debian's `prometheus` package on PATH (2.42 on bookworm, 2.53 on trixie). 3.x is
Debian unstable's build, unpacked by .ci/install-monitoring-tools.sh into
/opt/prometheus-3/bin (override with PROMETHEUS3_BIN); it is the same build that
`offline-images --suite sid` puts into the local/prometheus:3.5 image. Releases are told
apart by what the binaries say about themselves, not by where they sit.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MAJORS = (2, 3)
PROMETHEUS3_BIN = Path(os.environ.get("PROMETHEUS3_BIN", "/opt/prometheus-3/bin"))
INSTALL_HINT = "run .ci/install-monitoring-tools.sh as root (2.x: apt-get install prometheus)"


@dataclass(frozen=True)
class PromRelease:
    version: str  # e.g. "3.5.3+ds1", as `promtool --version` prints it
    prometheus: str
    promtool: str

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    @property
    def label(self) -> str:
        return f"prometheus-{self.major}"


def _version(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30,
                             check=False)
    except OSError:
        return None
    match = re.search(r"version (\d+\.\d+\.\S+)", out.stdout + out.stderr)
    return match.group(1) if match else None


def _candidates() -> list[tuple[str, str]]:
    pairs = []
    on_path = (shutil.which("prometheus"), shutil.which("promtool"))
    if all(on_path):
        pairs.append((str(on_path[0]), str(on_path[1])))
    pairs.append((str(PROMETHEUS3_BIN / "prometheus"), str(PROMETHEUS3_BIN / "promtool")))
    return pairs


@functools.cache
def releases() -> dict[int, PromRelease]:
    """{major: release} of the installed pairs whose prometheus and promtool agree."""
    found: dict[int, PromRelease] = {}
    for prometheus, promtool in _candidates():
        version = _version(promtool)
        if version is None or _version(prometheus) != version:
            continue
        release = PromRelease(version, prometheus, promtool)
        found.setdefault(release.major, release)
    return found


def need_release(major: int) -> PromRelease:
    """The installed Prometheus `major`.x; skips locally and fails under CI=true without it."""
    from tests.support.needs import need

    found = releases()
    need(major in found, f"no Prometheus {major}.x with its promtool: {INSTALL_HINT}")
    return found[major]
