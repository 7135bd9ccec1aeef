"""warren's services as real subprocesses, with their logs, metrics and probes at hand."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from testbed.broker import free_port

REPO = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """For preexec_fn (Linux): SIGTERM this process when the one that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(args: Sequence[str], env: Mapping[str, str] | None = None, log: Path | None = None,
          *, new_session: bool = False, die_with_parent: bool = False
          ) -> subprocess.Popen[bytes]:
    """`python <args>` from the repository root, output appended to `log` (or dropped).

    The one way the tests, the benchmarks and `make local` start warren's processes:
    the repository on PYTHONPATH (test task modules live there), JSON logs.
    """
    full_env = {**os.environ, "LOG_FORMAT": "json", **(env or {}), "PYTHONPATH": str(REPO)}
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, *args], env=full_env, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=new_session,
                                preexec_fn=_die_with_parent if die_with_parent else None)
    finally:
        if log:
            out.close()


@dataclass
class Service:
    module: str
    env: dict[str, str]
    log_path: Path
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.process = spawn(["-m", self.module, *self.args],
                             {"METRICS_PORT": str(self.port), **self.env}, self.log_path)
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> Service:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.probe("/readyz") == 200:
                return self
            if self.process and self.process.poll() is not None:
                raise AssertionError(f"{self.module} exited {self.process.returncode}:\n"
                                     f"{self.log()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{self.module} not ready after {timeout_s}s:\n{self.log()[-3000:]}")

    def probe(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def metrics(self) -> dict[str, float]:
        """Every sample as 'name{label="v"}' → value (labels sorted), or 'name' → value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return samples

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout_s: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class ServiceFactory:
    tmp_path: Path
    base_env: dict[str, str]
    started: list[Service] = field(default_factory=list)

    def start(self, module: str, *args: str, ready: bool = True, **env: str) -> Service:
        name = f"{module.replace('.', '_')}-{len(self.started)}"
        service = Service(module, {**self.base_env, **env}, self.tmp_path / f"{name}.log",
                          list(args))
        self.started.append(service.start())
        return service.wait_ready() if ready else service

    def run(self, module: str, *args: str, timeout_s: float = 60.0,
            **env: str) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "LOG_FORMAT": "json", "METRICS_PORT": "0",
                    **self.base_env, **env, "PYTHONPATH": str(REPO)}
        return subprocess.run([sys.executable, "-m", module, *args], env=full_env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout_s, check=False)

    def stop_all(self) -> None:
        for service in self.started:
            service.stop()
