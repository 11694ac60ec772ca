"""The metadata quorum across real network partitions: a broker cut off while it keeps
running (its timers too, unlike under SIGSTOP), then healed; and a partial partition
where two brokers cannot reach each other but both reach the third.

Timings measured here (cut to a new controller, heal to three live brokers) are printed
with the test's outcome.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kafka.errors import KafkaError, RequestTimedOutError

from compat_helpers import node_admin, wait_until

# The broker's metadata write timeout (QuorumConfig::write_timeout) and some slack for
# the client to learn the controller.
WRITE_TIMEOUT_S = 10.0


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def report(capsys, line: str) -> None:
    """Prints a measurement past pytest's capture, so that every run shows it."""
    with capsys.disabled():
        print(f"\n    {line}")


def create(bootstrap: str, topic: str, partitions: int = 1) -> None:
    """CreateTopics sent to the broker at `bootstrap` (which forwards it to the quorum)."""
    with node_admin(bootstrap) as admin:
        admin.create_topic(topic, partitions)


def topics(cluster, node: int) -> set[str] | None:
    """The topics in broker `node`'s Metadata."""
    try:
        with node_admin(cluster.bootstrap(node)) as admin:
            return admin.topic_names()
    except Exception:  # noqa: BLE001 - between answers
        return None


def sees(cluster, node: int, *wanted: str) -> bool:
    listed = topics(cluster, node)
    return listed is not None and set(wanted) <= listed


def controller_named_by(cluster, nodes: list[int]):
    """(controller,) when every one of `nodes` names the same live controller, else None."""
    try:
        named = {cluster.describe(node)["controller_id"] for node in nodes}
    except Exception:  # noqa: BLE001 - a broker between answers
        return None
    return (named.pop(),) if len(named) == 1 and -1 not in named else None


def live_and_fenced(cluster, node: int):
    """(live broker ids, fenced broker ids) as DescribeCluster through `node` says."""
    answer = cluster.describe(node)
    return sorted(b["broker_id"] for b in answer["brokers"]), answer["fenced"]


def test_a_cut_off_controller_is_replaced_fenced_and_rejoins_when_healed(make_netns_cluster,
                                                                        capsys):
    cluster = make_netns_cluster(3)
    (old,) = wait_until(lambda: controller_named_by(cluster, [0, 1, 2]), 30,
                        what="one controller named by all")
    majority = [i for i in range(3) if i != old]
    before = name("before-cut")
    create(cluster.bootstrap(old), before)
    for node in range(3):
        wait_until(lambda: sees(cluster, node, before), 20, what=f"{before} on node {node}")

    cluster.cut(old)
    cut_at = time.monotonic()
    (new,) = wait_until(
        lambda: (named := controller_named_by(cluster, majority)) and named[0] != old and named,
        30, interval=0.05, what=f"brokers {majority} to name a controller other than {old}")
    elected_s = time.monotonic() - cut_at
    assert new in majority
    report(capsys, f"cut controller {old}: brokers {majority} named controller {new} "
                   f"{elected_s:.2f}s after the cut")

    # The majority commits an admin change and sees it on both of its brokers.
    during = name("during-cut")
    create(cluster.bootstrap(majority[0]), during, partitions=2)
    for node in majority:
        wait_until(lambda: sees(cluster, node, during), 20, what=f"{during} on node {node}")
    # The cut broker misses its heartbeats: the majority fences it.
    for node in majority:
        wait_until(lambda: live_and_fenced(cluster, node) == (majority, [old]), 30,
                   interval=0.2, what=f"node {node} to list {majority} live and {old} fenced")

    # Through the cut broker, an admin change cannot commit: it times out.
    lost = name("in-minority")
    started = time.monotonic()
    with pytest.raises(RequestTimedOutError):
        create(cluster.bootstrap(old), lost)
    refused_s = time.monotonic() - started
    assert WRITE_TIMEOUT_S - 1 <= refused_s <= WRITE_TIMEOUT_S + 10, refused_s
    report(capsys, f"CreateTopics through the cut broker: REQUEST_TIMED_OUT after {refused_s:.1f}s")

    cluster.heal(old)
    healed_at = time.monotonic()
    cluster.wait_for_brokers(3, via=[0, 1, 2], timeout=60)
    rejoined_s = time.monotonic() - healed_at
    report(capsys, f"healed: every broker lists 3 live brokers {rejoined_s:.2f}s after the heal")
    wait_until(lambda: sees(cluster, old, before, during), 30,
               what=f"{during} through the healed broker {old}")
    assert controller_named_by(cluster, [0, 1, 2]) == (new,)

    # The healed broker commits again; once its change is seen everywhere, so would be
    # anything committed before it: the change that timed out in the minority is not.
    after = name("after-heal")
    create(cluster.bootstrap(old), after)
    for node in range(3):
        wait_until(lambda: sees(cluster, node, after), 20, what=f"{after} on node {node}")
        listed = topics(cluster, node)
        assert listed is not None and {before, during, after} <= listed
        assert lost not in listed, f"node {node} lists {lost}, whose creation timed out"


def test_a_partial_partition_between_followers_keeps_metadata_available(make_netns_cluster,
                                                                        capsys):
    cluster = make_netns_cluster(3)
    (controller,) = wait_until(lambda: controller_named_by(cluster, [0, 1, 2]), 30,
                               what="one controller named by all")
    # The two followers lose each other; both still reach the controller.
    a, b = [i for i in range(3) if i != controller]
    cluster.cut_between(a, b)
    cut_at = time.monotonic()

    created = []
    for node in (a, b, controller):
        topic = name(f"partial-via-{node}")
        create(cluster.bootstrap(node), topic)
        created.append(topic)
    for node in range(3):
        wait_until(lambda: sees(cluster, node, *created), 20, interval=0.2,
                   what=f"every topic created during the partition on node {node}")
    settled_s = time.monotonic() - cut_at
    # Nobody is fenced, and the controller never changed: the followers still hear it.
    for node in range(3):
        assert live_and_fenced(cluster, node) == ([0, 1, 2], []), node
    assert controller_named_by(cluster, [0, 1, 2]) == (controller,)
    report(capsys, f"partial partition {a}-/-{b} (controller {controller} reaches both): "
                   f"3 topics created through each broker and seen everywhere {settled_s:.1f}s "
                   f"after the cut")
    cluster.heal_all()
    cluster.wait_for_brokers(3, via=[0, 1, 2], timeout=30)


def test_a_voter_cut_from_the_controller_only(make_netns_cluster, capsys):
    """The voter cut from the controller still reaches the third voter, a majority with
    it. As in Kafka's KRaft with pre-vote (KIP-996), it neither deposes the controller
    (the third voter, which still hears the leader, refuses its votes: openraft's leader
    lease) nor follows the metadata through the third voter (only the leader replicates):
    the controller, missing its heartbeats, fences it, so clients leave it, and a write
    through it fails with a retriable error. After the heal, every broker converges."""
    cluster = make_netns_cluster(3)
    (controller,) = wait_until(lambda: controller_named_by(cluster, [0, 1, 2]), 30,
                               what="one controller named by all")
    stranded = (controller + 1) % 3
    third = 3 - controller - stranded
    cluster.cut_between(controller, stranded)
    cut_at = time.monotonic()

    # Through the third broker, changes commit.
    via_third = name("partial-via-third")
    create(cluster.bootstrap(third), via_third)
    wait_until(lambda: sees(cluster, controller, via_third), 20, what=f"{via_third} on the controller")
    # The majority fences the stranded broker once its session runs out; nobody else.
    wait_until(lambda: all(live_and_fenced(cluster, n) == (sorted([controller, third]), [stranded])
                           for n in (controller, third)), 30,
               what=f"broker {stranded} fenced by the controller's side")
    fenced_s = time.monotonic() - cut_at
    # Through the voter cut from the controller: one attempt, within the write timeout.
    via_stranded = name("partial-via-stranded")
    with pytest.raises(KafkaError) as refused:
        create(cluster.bootstrap(stranded), via_stranded)
    assert refused.value.retriable, refused.value
    # The controller never changed: the stranded voter deposed nobody.
    assert controller_named_by(cluster, [controller, third]) == (controller,)
    views = {node: (cluster.describe(node)["controller_id"], live_and_fenced(cluster, node))
             for node in range(3)}
    report(capsys, f"voter {stranded} cut from controller {controller} only: fenced "
                   f"{fenced_s:.1f}s after the cut, its CreateTopics "
                   f"{type(refused.value).__name__}; (controller, (live, fenced)) by node: "
                   f"{views}")

    cluster.heal_all()
    healed_at = time.monotonic()
    cluster.wait_for_brokers(3, via=[0, 1, 2], timeout=60)
    for node in range(3):
        wait_until(lambda: sees(cluster, node, via_third), 30, what=f"{via_third} on node {node}")
    assert wait_until(lambda: controller_named_by(cluster, [0, 1, 2]), 30,
                      what="one controller after the heal")
    report(capsys, f"healed: 3 live brokers and one controller "
                   f"{time.monotonic() - healed_at:.2f}s after the heal")
