from __future__ import annotations

import pytest

from warren.bindings import Binding, parse_bindings
from warren.errors import SettingsError
from warren.settings import Settings


def test_every_kind_parses() -> None:
    assert parse_bindings(
        "logs:fanout; alerts:direct:error ;weather:topic:europe.#;"
        "docs:headers:x-match=any,format=pdf,type=report"
    ) == (
        Binding("logs", "fanout"),
        Binding("alerts", "direct", "error"),
        Binding("weather", "topic", "europe.#"),
        Binding("docs", "headers",
                arguments={"x-match": "any", "format": "pdf", "type": "report"}),
    )


def test_headers_match_all_by_default() -> None:
    [b] = parse_bindings("docs:headers:format=pdf")
    assert b.arguments == {"x-match": "all", "format": "pdf"}


@pytest.mark.parametrize(("raw", "says"), [
    ("logs", "type must be one of"),
    ("logs:queue", "type must be one of"),
    (":fanout", "needs an exchange name"),
    ("amq.topic:topic:a", "needs an exchange name"),
    ("alerts:direct", "needs a routing key"),
    ("docs:headers:", "at least one key=value"),
    ("docs:headers:format", "key=value"),
    ("docs:headers:x-match=some,a=b", "x-match must be all or any"),
])
def test_bad_bindings_stop_the_service_naming_the_variable(raw: str, says: str) -> None:
    with pytest.raises(SettingsError, match=r"^BINDINGS: ") as err:
        Settings.from_env({"BINDINGS": raw})
    assert says in str(err.value)
