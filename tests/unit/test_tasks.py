from __future__ import annotations

import pytest

from warren.errors import MalformedMessage
from warren.messages import Task
from worker.tasks import BadArguments, TaskRegistry, registry


def test_builtin_tasks_are_registered() -> None:
    assert {"sleep", "cpu", "fail", "noop", "dots"} <= set(registry.names())


def test_decorator_registers_a_user_task_and_checks_types() -> None:
    reg = TaskRegistry()
    seen = []

    @reg.task("resize")
    def resize(url: str, width: int = 640) -> None:
        seen.append((url, width))

    reg.resolve(Task("resize", {"url": "u", "width": 10}))()
    assert seen == [("u", 10)]
    with pytest.raises(BadArguments, match="width must be int, got str"):
        reg.resolve(Task("resize", {"url": "u", "width": "10"}))
    with pytest.raises(BadArguments, match="width must be int, got bool"):
        reg.resolve(Task("resize", {"url": "u", "width": True}))
    with pytest.raises(MalformedMessage, match="unknown task type 'crop'"):
        reg.resolve(Task("crop", {}))


def test_float_parameters_accept_ints() -> None:
    registry.resolve(Task("sleep", {"seconds": 0}))()


def test_cpu_task_is_deterministic() -> None:
    assert registry.resolve(Task("cpu", {"rounds": 3}))() == registry.resolve(
        Task("cpu", {"rounds": 3}))()


def test_fail_task_raises_a_retryable_error() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        registry.resolve(Task("fail", {"message": "boom"}))()


def _plain(x: int, y: str = "d", *, z: float = 0.0) -> None: ...
def _positional(x: int, /) -> None: ...
def _var(x: int, **rest: object) -> None: ...


@pytest.mark.parametrize(("fn", "args", "refusal"), [
    (_plain, {"x": 1}, None),
    (_plain, {"x": 1, "y": "s", "z": 2}, None),
    (_plain, {}, "missing a required argument: 'x'"),
    (_plain, {"y": "s"}, "missing a required argument: 'x'"),
    (_plain, {"x": 1, "w": 2}, "unexpected keyword argument 'w'"),
    (_plain, {"x": "1"}, "x must be int, got str"),
    (_plain, {"x": 1, "z": "2"}, "z must be float, got str"),
    (_positional, {"x": 1}, "positional only"),
    (_var, {"x": 1, "w": "anything"}, None),
    (_var, {"w": 1}, "missing a required argument: 'x'"),
])
def test_arguments_are_checked_alike_on_every_path(fn, args, refusal) -> None:
    reg = TaskRegistry()
    reg.task("t")(fn)
    if refusal is None:
        reg.resolve(Task("t", args))
    else:
        with pytest.raises(BadArguments, match=refusal):
            reg.resolve(Task("t", args))


def test_only_tasks_registered_inline_may_run_on_the_io_thread() -> None:
    """`sleep` may be short or long by its arguments: never inline; `noop` is bounded."""
    reg = TaskRegistry()

    @reg.task("lookup", inline=True)
    def lookup(key: str) -> str:
        return key

    @reg.task("fetch")
    def fetch(url: str) -> None: ...

    assert reg.may_run_inline("lookup")
    assert not reg.may_run_inline("fetch")
    assert not reg.may_run_inline("never-registered")
    assert registry.may_run_inline("noop")
    assert not registry.may_run_inline("sleep")
