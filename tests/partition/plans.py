"""What the partition suite runs: a CI-sized plan (default) and the full one (`make partition`).

PARTITION_PLAN=ci    RabbitMQ 3.10 and 4.3, the heartbeat the README recommends, each fault
                     once with short phases (CI_PHASES), the negative control once
PARTITION_PLAN=full  each fault with longer phases (FULL_PHASES), PARTITION_REPEAT times
                     (default 3): on 3.10 with the recommended heartbeat and with the
                     broker's default, on 4.3 with the recommended heartbeat
PARTITION_VERSIONS   which RabbitMQ versions, comma-separated (default "3.10,4.3"); 4.3 runs
                     the image of the 4.3 test nodes (testbed/broker_container.py)

A CI run checks exactly what a full run checks; only the phases are shorter and nothing
is repeated (but its 20 s holds are shorter than some "flowing again" bounds: it cannot
tell a majority that resumed during the fault from one that resumed after the heal). The
bounds below come from the mechanisms that set them, plus two chosen allowances (SETTLE_S
and the 30 s margin on the wait), none fitted to a run:
- a node cut off from the other two declares them down after net_ticktime * (1 ± 1/4)
  (NET_TICKTIME_S = 10 here), then pauses (`pause_minority`) and closes its clients'
  connections, which move to the next node in their AMQP_URL;
- a client whose node goes silent (frozen, or unreachable) notices when no byte came for
  one pika check interval (heartbeat + 5 s), i.e. within 2 * (heartbeat + 5);
- a reconnect waits out a backoff capped at 5 s (warren/backoff.py), and each silent node
  tried on the way costs pika's socket timeout (10 s).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from testbed.netcluster import NET_TICKTIME_S
from testbed.partition import (
    Fault,
    PartitionPlan,
    bridge_outage,
    client_sees_only_minority,
    flapping,
    isolate_leader,
    sigstop_leader,
)

RECOMMENDED_HEARTBEAT_S = 10  # what the README tells users to put in AMQP_URL
BROKER_HEARTBEAT_S = 60  # RabbitMQ's default, which warren accepts unless told otherwise
DETECT_S = NET_TICKTIME_S * 1.25
BACKOFF_CAP_S = 5.0
SOCKET_TIMEOUT_S = 10.0
SETTLE_S = 10.0  # a paused node restarting its app, elections, a first task dispatched


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Fault
    hold_s: float
    # Majority side: tasks flowing again within this of the cut (None: there is no majority).
    flow_within_s: float | None
    # After the last heal: every worker, the minority's included, runs tasks again within this.
    back_within_s: float


def silent_s(heartbeat_s: int) -> float:
    """The longest a client sits on a connection whose peer went silent."""
    return 2 * (heartbeat_s + 5)


@dataclass(frozen=True)
class Phases:
    """How long the faults of a plan last."""

    hold_s: float  # a cut, or a SIGSTOP
    bridge_s: float  # the bridge outage
    flaps: int  # flapping: cut-heal cycles,
    flap_cut_s: float  # each cut this long (under the detection time)
    flap_heal_s: float  # and healed this long


# A hold must outlast the detection (DETECT_S) and the election after it by a few seconds,
# or on 3.10 no node would pause and no new leader be seen while the fault holds: 15 s was
# too short on a loaded machine (3.10's quorum queues re-elected 10-13 s after the cut),
# 20 s leaves 7 s. The full plan holds 30 s, so that the clients' own timeouts (heartbeat,
# socket) fire inside the fault too.
CI_PHASES = Phases(hold_s=20.0, bridge_s=15.0, flaps=3, flap_cut_s=2.0, flap_heal_s=2.0)
FULL_PHASES = Phases(hold_s=30.0, bridge_s=22.5, flaps=10, flap_cut_s=3.0, flap_heal_s=3.0)


def scenarios(phases: Phases, heartbeat_s: int, version: str) -> list[Scenario]:
    hold_s = phases.hold_s
    # 3.10: clients of the cut-off leader move once it pauses (detection, a backoff, an
    # election). 4.3 has no pause_minority (Khepri is Raft): the cut-off node stays up and
    # keeps its clients, whose publishes wait unconfirmed until the heal; warren has no
    # confirm timeout that would make the publisher leave (reported as a product gap).
    moved = (DETECT_S if version == "3.10" else hold_s) + BACKOFF_CAP_S + SETTLE_S
    return [
        Scenario("isolate-leader", isolate_leader(hold_s), hold_s, moved,
                 back_within_s=SETTLE_S + BACKOFF_CAP_S),
        # The majority keeps the leader: nothing there stops. The cut-off worker waits
        # (its only node is paused, or on 4.3 cut off) and comes back after the heal: a
        # connect to a node that was silent may be under way (socket timeout), a backoff.
        Scenario("client-sees-only-minority", client_sees_only_minority(hold_s), hold_s,
                 SETTLE_S, back_within_s=SETTLE_S + 2 * SOCKET_TIMEOUT_S + BACKOFF_CAP_S),
        # Every node is alone: all pause (3.10). After the heal a client may still sit on
        # its dead connection until its heartbeat check fires.
        Scenario("bridge-outage", bridge_outage(phases.bridge_s), phases.bridge_s, None,
                 back_within_s=silent_s(heartbeat_s) + SETTLE_S + BACKOFF_CAP_S),
        # Cuts shorter than the detection time: Raft re-elects, and mostly no node pauses
        # (TCP's retransmission backoff stretched a 3 s cut past it now and then on 3.10).
        Scenario("flapping", flapping(cycles=phases.flaps, cut_s=phases.flap_cut_s,
                                      heal_s=phases.flap_heal_s),
                 phases.flap_cut_s, None, back_within_s=SETTLE_S + BACKOFF_CAP_S),
        # pause_minority cannot see a frozen node from inside it; its clients wait for their
        # heartbeat check, or for SIGCONT (on 3.10 the node then pauses and drops them).
        Scenario("sigstop-leader", sigstop_leader(hold_s), hold_s,
                 min(silent_s(heartbeat_s), hold_s) + BACKOFF_CAP_S + SETTLE_S,
                 back_within_s=DETECT_S + BACKOFF_CAP_S + SETTLE_S),
    ]


@dataclass(frozen=True)
class Config:
    key: str  # for test ids
    label: str
    version: str  # RabbitMQ: "3.10" (Debian package) or "4.3" (Docker image)
    heartbeat_s: int  # what the clients end up with
    url_options: str  # appended to each AMQP_URL entry

    def plan(self) -> PartitionPlan:
        # Wait for the clients as long as the slowest way back may take (a silent
        # connection, then a reconnect through silent nodes), with a margin, so that a
        # bound is what fails a test, not the wait.
        wait_s = silent_s(self.heartbeat_s) + 2 * SOCKET_TIMEOUT_S + SETTLE_S + 30
        return PartitionPlan(url_options=self.url_options, resume_timeout_s=wait_s)


HB = f"heartbeat={RECOMMENDED_HEARTBEAT_S}"
CONFIGS = {
    "3.10": [Config("3.10-hb10", f"RabbitMQ 3.10, {HB}", "3.10", RECOMMENDED_HEARTBEAT_S, HB),
             Config("3.10-hb60", "RabbitMQ 3.10, broker's heartbeat (60 s)", "3.10",
                    BROKER_HEARTBEAT_S, "")],
    "4.3": [Config("4.3-hb10", f"RabbitMQ 4.3, {HB}", "4.3", RECOMMENDED_HEARTBEAT_S, HB)],
}


def run_id(value: object) -> str:
    if isinstance(value, Config):
        return value.key
    if isinstance(value, Scenario):
        return value.name
    return f"run{value}"


def plan_name() -> str:
    name = os.environ.get("PARTITION_PLAN", "ci")
    if name not in ("ci", "full"):  # a typo must not quietly run the other plan
        raise ValueError(f"PARTITION_PLAN={name!r}: expected 'ci' or 'full'")
    return name


def repeats() -> int:
    if plan_name() != "full":
        return 1
    count = int(os.environ.get("PARTITION_REPEAT", "3"))
    if count < 1:  # 0 would collect nothing, and pass
        raise ValueError(f"PARTITION_REPEAT={count}: expected 1 or more")
    return count


def versions() -> list[str]:
    """PARTITION_VERSIONS (comma-separated); both 3.10 and 4.3 unless it says otherwise."""
    picked = [v.strip() for v in os.environ.get("PARTITION_VERSIONS", "3.10,4.3").split(",")]
    unknown = [v for v in picked if v not in CONFIGS]
    if unknown:
        raise ValueError(f"PARTITION_VERSIONS: unknown {unknown}; expected {sorted(CONFIGS)}")
    return picked


def runs() -> list[tuple[Config, Scenario, int]]:
    full = plan_name() == "full"
    # CI: the configuration the README recommends, each fault once, short phases.
    configs = [c for v in versions() for c in (CONFIGS[v] if full else CONFIGS[v][:1])]
    phases = FULL_PHASES if full else CI_PHASES
    return [(config, scenario, i) for config in configs
            for scenario in scenarios(phases, config.heartbeat_s, config.version)
            for i in range(repeats())]
