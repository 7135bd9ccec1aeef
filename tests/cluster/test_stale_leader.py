"""A channel whose first publish to a quorum queue comes just after the queue's leader died.

RabbitMQ 3.10 sends such a channel's first publish to the node its copy of the queue
record names, the dead leader, and from then on nacks every publish of that channel for
as long as it lives (rabbit_fifo_client:enqueue/3 in 3.10.8: {badrpc, nodedown} →
reject_publish, same node next time). 4.x registers the publisher with every member and
takes the publish. A plain pika channel is the control: it shows which of the two the node
under test does. warren's Publisher must get every message confirmed either way, replacing
the channel on 3.10 (`RENEW_AFTER_S` of nacks), without a new connection. The same
death drops, on 3.10, every unconfirmed publish of such a channel: an RpcClient whose first
request followed it must answer again once a call timed out (it takes a new channel).
"""

from __future__ import annotations

import time

import pika
import pika.exceptions as pex

from rpc_server.client import RpcClient, RpcTimeout
from testbed.broker import LocalBroker
from testbed.cluster import RabbitCluster
from testbed.processes import ServiceFactory
from warren.amqp import Link, Outgoing, Publisher, PublishEvents
from warren.amqp.connect import connect
from warren.settings import Settings

QUEUE = "stale_leader_q"
COUNT = 200
CONTROL_TRIES = 4  # publishes of the control: one at once, the others after warren's run
CONTROL_GAP_S = 1.0
RPC_TIMEOUT_S = 3.0


def declare(cluster: RabbitCluster, first: LocalBroker) -> None:
    with pika.BlockingConnection(pika.URLParameters(first.url)) as connection:
        connection.channel().queue_declare(QUEUE, durable=True,
                                           arguments={"x-queue-type": "quorum"})


def control_publish(channel: pika.adapters.blocking_connection.BlockingChannel) -> str:
    """One publish of the control, waiting for its confirm: "acked" or "nacked"."""
    try:
        channel.basic_publish("", QUEUE, b"control")
    except pex.NackError:
        return "nacked"
    return "acked"


def rpc_outcomes(client: RpcClient, first: str) -> list[str]:
    """The request sent right after the death, then calls until 3 answered in a row (at
    most 8): "answered" or "timeout" each."""
    outcomes = []
    for attempt in range(8):
        try:
            answer = client.result(first) if attempt == 0 else client.call(attempt, 1)
            assert answer == (3 if attempt == 0 else attempt + 1)
            outcomes.append("answered")
        except RpcTimeout:
            outcomes.append("timeout")
        if outcomes[-3:] == ["answered"] * 3:
            break
    return outcomes


def test_a_publisher_whose_first_publish_follows_the_leaders_death_gets_confirms(
        cluster: RabbitCluster, cluster_services: ServiceFactory) -> None:
    declare(cluster, cluster.nodes[0])
    server = cluster_services.start("rpc_server", WORKER_ID="rpc")  # declares rpc_queue
    leader = cluster.leader_of(QUEUE)
    assert cluster.leader_of("rpc_queue") is leader  # both declared through the first node
    survivor = next(node for node in cluster.alive if node is not leader)

    # Both channels open on a survivor before the death; neither has published to QUEUE yet.
    control = pika.BlockingConnection(pika.URLParameters(survivor.url))
    control_channel = control.channel()
    control_channel.confirm_delivery()
    confirmed: list[Outgoing] = []
    publisher = Publisher(PublishEvents(lambda message, _token, _s: confirmed.append(message)),
                          window=COUNT)
    settings = Settings.from_env({"AMQP_URL": survivor.url})
    link = Link(connect(settings, "stale-leader"))
    publisher.attach(link)
    client = RpcClient(settings, timeout_s=RPC_TIMEOUT_S)

    cluster.kill(leader)
    publisher.submit_all([Outgoing(b"%d" % i, pika.BasicProperties(delivery_mode=2), QUEUE)
                          for i in range(COUNT)])
    link.flush()  # warren's first publish leaves now, the RPC request's and control's next
    first_request = client.send(1, 2)
    client._link.flush()
    outcomes = [control_publish(control_channel)]
    deadline = time.monotonic() + 60
    while len(confirmed) < COUNT and time.monotonic() < deadline:
        link.serve(0.1)
        publisher.flush()
    for _ in range(CONTROL_TRIES - 1):  # later tries: is the control's channel still refused?
        time.sleep(CONTROL_GAP_S)
        outcomes.append(control_publish(control_channel))
    control.close()
    link.close()
    answers = rpc_outcomes(client, first_request)
    client.close()
    assert server.probe("/readyz") == 200

    assert len(confirmed) == COUNT, f"{len(confirmed)} of {COUNT} confirmed in 60 s"
    assert answers[-3:] == ["answered"] * 3, answers  # the RPC client answers again
    if cluster.nodes[0].runtime.major < 4:
        # The fault is there (else this test proves nothing), and warren got past it.
        assert outcomes == ["nacked"] * CONTROL_TRIES, outcomes
        assert publisher.renewals >= 1
    else:
        assert outcomes[-1] == "acked", outcomes
        assert publisher.renewals == 0

