from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.broker import LocalBroker
from tests.support.broker import BrokerUnderTest


@pytest.fixture
def node(broker: BrokerUnderTest) -> Iterator[LocalBroker]:
    """The private node: these tests SIGKILL and restart it (AMQP_URL's broker cannot be)."""
    yield broker.private
