"""What `warren events` prints for a person: one line, whatever a task put in its error."""

from __future__ import annotations

import time

from warren.admin.events import line


def test_an_error_with_escapes_and_newlines_stays_one_inert_line() -> None:
    printed = line({"event": "parked", "type": "t", "task_id": "x", "worker": "w",
                    "duration_s": 1, "error": "\x1b[31mRED\x1b[0m\nsecond line"})
    assert "\x1b" not in printed and "\n" not in printed
    assert "\\x1b[31mRED" in printed and "\\nsecond line" in printed


def test_a_body_nested_past_the_recursion_limit_is_passed_over() -> None:
    """Anyone may publish to the events exchange: `[` * 200,000 ended `warren events`."""
    import pika

    from warren.admin.events import EventFilter, Follower
    from warren.amqp import Message
    from warren.settings import Settings

    printed: list[str] = []
    follower = Follower(Settings.from_env({}), EventFilter(), printed.append, as_json=True)
    props = pika.BasicProperties()
    follower._on_event(Message(1, False, "warren.events", "", props, b"[" * 200_000))
    follower._on_event(Message(2, False, "warren.events", "", props, b'{"event": "done"}'))
    assert printed == ['{"event": "done"}']


def test_a_task_of_unknown_age_is_never_older_than_anything() -> None:
    """`dead purge --older-than 604800` purged a message without timestamp or warren headers."""
    from warren.admin.dead import Filter, Parked

    unknown = Parked("m", "t", "r", None, None, None, None, {}, b"")
    assert not Filter(older_than_s=604800)(unknown)
    assert Filter()(unknown)


def test_a_bad_reason_pattern_is_a_usage_error_not_a_traceback() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "warren.admin", "dead", "list", "--reason", "("],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "not a regular expression" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_event_line_shows_the_workers_time_and_ignores_a_bad_one() -> None:
    at = 1796086963.5
    assert line({"event": "done", "finished_at": at}).startswith(
        time.strftime("%H:%M:%S", time.localtime(at)))
    for bad in ("01:02:03", True, -1, 1e300, float("nan"), None):
        stamp = line({"event": "done", "finished_at": bad}).split()[0]
        assert len(stamp) == 8 and stamp.count(":") == 2  # now, not a traceback


def test_dead_list_names_the_type_the_worker_would_read() -> None:
    """`warren dead list` decodes a parked body as the worker does: by its content type,
    JSON as UTF-8 only (it used to guess with json.loads, which reads UTF-16 and BOMs)."""
    import json

    import pika

    from warren.admin.dead import Parked
    from warren.amqp import Message

    def listed(body: bytes, content_type: str | None) -> str:
        props = pika.BasicProperties(content_type=content_type, message_id="m")
        return Parked.of(Message(1, False, "", "task_queue.dead", props, body)).task_type

    task = json.dumps({"type": "resize", "args": {}})
    assert listed(task.encode(), "application/json") == "resize"
    assert listed(task.encode(), None) == "resize"
    assert listed(task.encode("utf-16"), "application/json") == ""
    assert listed(task.encode("utf-16"), None) == ""
    assert listed(b"\xef\xbb\xbf" + task.encode(), None) == ""
    assert listed(b"{not json", "application/json") == ""  # no task, not dots
    assert listed(b"Hello...", "text/plain") == "dots"
    assert listed(b"Hello...", None) == "dots"
    assert listed(b"\xff\xfe\x00", "text/plain") == ""


def test_dead_list_and_show_print_nothing_that_drives_a_terminal() -> None:
    """Anyone may publish a task or a parked copy: its type and body reach the operator's
    terminal as escapes, and a time no date can hold is shown as the number."""
    import json

    import pika

    from warren.admin.cli import _inert, _when
    from warren.admin.dead import Parked
    from warren.amqp import Message

    body = json.dumps({"type": "x\n\x1b[31mRED\x1b[0m\r", "args": {}}).encode()
    props = pika.BasicProperties(content_type="application/json", message_id="m")
    listed = Parked.of(Message(1, False, "", "task_queue.dead", props, body)).task_type
    assert listed.isprintable() and "\\x1b[31mRED" in listed
    assert _inert("one\x1b]0;owned\x07\r\ntwo\tthree") == "one\\x1b]0;owned\\x07\\r\ntwo\tthree"
    assert _when(2**62) == str(2**62) and _when(None) == "-"


def test_a_body_over_max_body_bytes_is_listed_without_a_type() -> None:
    """A worker parked it unread: `dead requeue --type sleep` must not pick it up as a
    sleep task, bound to be parked again."""
    import json

    import pika

    from warren.admin.dead import Parked
    from warren.amqp import Message

    body = json.dumps({"type": "sleep", "args": {"pad": "x" * 2000}}).encode()
    message = Message(1, False, "", "task_queue.dead",
                      pika.BasicProperties(content_type="application/json"), body)
    assert Parked.of(message, max_body_bytes=1000).task_type == ""
    assert Parked.of(message, max_body_bytes=len(body)).task_type == "sleep"
