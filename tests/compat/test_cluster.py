"""Three broker processes as one cluster, driven by real clients (kafka-python,
confluent-kafka, kcat): one metadata quorum, brokers that know each other, replicas placed
over them, leaders that clients find from any broker, and metadata that stays available
when a broker and then the controller die.

Until replication lands, a partition's data lives on its leader only: these tests check
placement, routing and the metadata quorum, not copies of the data.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import (CoordinatorNotAvailableError, InvalidReplicationFactorError, KafkaError,
                          NotCoordinatorError, RequestTimedOutError,
                          TopicAlreadyExistsError)

from compat_helpers import (admin_client, consumer, java_hash_partition, poll_until, producer,
                            wait_until)

pytestmark = pytest.mark.timeout(240)


def topic_partitions(bootstrap: str, name: str) -> list[dict]:
    with admin_client(bootstrap) as admin:
        (described,) = admin.describe_topics([name])
    assert described["error_code"] == 0, described
    return sorted(described["partitions"], key=lambda p: p["partition_index"])


def create(bootstrap: str, name: str, partitions: int, factor: int) -> None:
    with admin_client(bootstrap) as admin:
        admin.create_topics([NewTopic(name=name, num_partitions=partitions,
                                      replication_factor=factor)])


def create_retrying(bootstrap: str, name: str, partitions: int, factor: int,
                    timeout: float = 30.0) -> None:
    """create(), retried as a client would while the cluster settles after a failure."""
    def attempt():
        try:
            create(bootstrap, name, partitions, factor)
            return True
        except TopicAlreadyExistsError:
            return True
        except KafkaError:
            return False
    wait_until(attempt, timeout, interval=0.5, what=f"creating {name}")


def test_three_brokers_form_one_cluster(make_cluster):
    cluster = make_cluster(3)
    answers = [cluster.describe(node) for node in range(3)]
    assert len({a["cluster_id"] for a in answers}) == 1
    assert len({a["controller_id"] for a in answers}) == 1
    assert answers[0]["controller_id"] in (0, 1, 2)
    for a in answers:
        listed = sorted((b["broker_id"], f"{b['host']}:{b['port']}") for b in a["brokers"])
        assert listed == [(i, cluster.bootstrap(i)) for i in range(3)]
    # Every data directory says which cluster and node it belongs to.
    for i, b in enumerate(cluster.brokers):
        props = (b.data_dir / "meta.properties").read_text()
        assert f"cluster.id={answers[0]['cluster_id']}\n" in props
        assert f"node.id={i}\n" in props


def test_replicas_and_leaders_are_spread_and_too_many_replicas_are_refused(make_cluster, topic):
    cluster = make_cluster(3)
    create(cluster.bootstrap(1), topic, partitions=6, factor=3)
    # Visible on every broker once committed.
    for node in range(3):
        partitions = wait_until(lambda: _described(cluster.bootstrap(node), topic), 20,
                                what=f"{topic} on node {node}")
        assert [p["partition_index"] for p in partitions] == list(range(6))
        for p in partitions:
            assert sorted(p["replica_nodes"]) == [0, 1, 2]
            assert p["leader_id"] == p["replica_nodes"][0]
        leaders = collections.Counter(p["leader_id"] for p in partitions)
        assert leaders == {0: 2, 1: 2, 2: 2}
    with pytest.raises(InvalidReplicationFactorError):
        create(cluster.bootstrap(2), topic + "-wide", partitions=1, factor=4)


def _described(bootstrap: str, name: str):
    try:
        return topic_partitions(bootstrap, name)
    except Exception:  # noqa: BLE001 - not there yet
        return None


def _group_offsets(bootstrap: str, group: str):
    """The group's committed offsets, or None while the broker asked does not yet know
    its coordinator (NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE: retriable)."""
    try:
        with admin_client(bootstrap) as admin:
            return admin.list_group_offsets(group)
    except (NotCoordinatorError, CoordinatorNotAvailableError):
        return None


def test_a_client_of_one_broker_produces_and_consumes_every_partition(make_cluster, topic):
    cluster = make_cluster(3)
    create(cluster.bootstrap(0), topic, partitions=6, factor=1)
    wait_until(lambda: _described(cluster.bootstrap(2), topic), 20, what="the topic on node 2")
    sent = {}
    with producer(cluster.bootstrap(2), acks="all") as p:
        for i in range(600):
            meta = p.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % 6).get(timeout=30)
            sent[(meta.partition, meta.offset)] = b"v%d" % i
    assert {part for part, _ in sent} == set(range(6))
    # Each partition's data is on its leader only: every broker holds some of it.
    leaders = {p["partition_index"]: p["leader_id"] for p in topic_partitions(cluster.bootstrap(1), topic)}
    assert set(leaders.values()) == {0, 1, 2}

    # A consumer group coordinated by whichever broker leads its offsets partition.
    with consumer(cluster.bootstrap(0), topic, group_id="spanning", auto_offset_reset="earliest",
                  enable_auto_commit=False) as c:
        got = poll_until(c, 600, timeout=60)
        c.commit()
    assert {(r.partition, r.offset): r.value for r in got} == sent
    with admin_client(cluster.bootstrap(1)) as admin:
        committed = admin.list_group_offsets("spanning")
    assert sum(o.offset for o in committed["spanning"].values()) == 600


def test_confluent_kafka_and_kcat_see_three_brokers_and_the_same_leaders(make_cluster, topic):
    cluster = make_cluster(3)
    create(cluster.bootstrap(0), topic, partitions=3, factor=2)
    expected = wait_until(lambda: _described(cluster.bootstrap(0), topic), 20, what="the topic")
    ck = AdminClient({"bootstrap.servers": cluster.bootstrap(1)}).list_topics(topic, timeout=15)
    assert sorted(ck.brokers) == [0, 1, 2]
    ck_leaders = {p.id: p.leader for p in ck.topics[topic].partitions.values()}
    assert ck_leaders == {p["partition_index"]: p["leader_id"] for p in expected}
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat is not installed: run scripts/test-deps.sh", pytrace=False)
    out = subprocess.run([kcat, "-L", "-b", cluster.bootstrap(2), "-t", topic],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert " 3 brokers:" in out, out
    for p in expected:
        assert f"partition {p['partition_index']}, leader {p['leader_id']}," in out, out


@pytest.mark.crash
def test_metadata_stays_available_when_a_broker_and_then_the_controller_die(make_cluster, unique_name):
    cluster = make_cluster(3)
    controller = cluster.describe(0)["controller_id"]
    other = next(i for i in range(3) if i != controller)
    survivor = next(i for i in range(3) if i not in (controller, other))

    # A topic led partly by the broker about to die.
    led = unique_name("led-everywhere")
    create(cluster.bootstrap(survivor), led, partitions=3, factor=1)
    wait_until(lambda: _described(cluster.bootstrap(survivor), led), 20, what=led)

    cluster.brokers[other].kill9()
    # Fenced once its session runs out: no longer offered to clients, and its partitions
    # are offline (LEADER_NOT_AVAILABLE) rather than served by a broker without the data.
    cluster.wait_for_brokers(2, via=[survivor], timeout=30)
    partitions = topic_partitions(cluster.bootstrap(survivor), led)
    for p in partitions:
        dead = p["replica_nodes"][0] == other
        assert (p["leader_id"], p["error_code"]) == ((-1, 5) if dead else (p["replica_nodes"][0], 0)), p
        assert p["offline_replicas"] == ([other] if dead else []), p
    first = unique_name("after-broker")
    create(cluster.bootstrap(survivor), first, partitions=2, factor=1)
    assert wait_until(lambda: _described(cluster.bootstrap(controller), first), 20, what=first)

    cluster.brokers[other].start()
    wait_until(lambda: _described(cluster.bootstrap(other), first), 30,
               what="the restarted broker to catch up")
    cluster.wait_for_brokers(3, via=[survivor, other])

    # The controller now (the restart may have moved it), as every broker names it.
    (controller,) = wait_until(lambda: _agreed_controller(cluster), 30, what="one controller")
    watcher, writer = [i for i in range(3) if i != controller]
    cluster.brokers[controller].kill9()
    killed = time.monotonic()
    (answer,) = wait_until(
        lambda: _new_controller(cluster, watcher, controller), 30, interval=0.1,
        what="a new controller")
    elected = time.monotonic() - killed
    print(f"new controller {answer} elected {elected:.2f}s after the old one was killed")
    second = unique_name("after-controller")
    create_retrying(cluster.bootstrap(writer), second, partitions=2, factor=1)
    assert wait_until(lambda: _described(cluster.bootstrap(watcher), second), 20, what=second)


def _agreed_controller(cluster):
    """(controller,) when all three brokers name the same one, else None."""
    try:
        named = {cluster.describe(node)["controller_id"] for node in range(3)}
    except Exception:  # noqa: BLE001 - a broker between answers
        return None
    return (named.pop(),) if len(named) == 1 and -1 not in named else None


@pytest.mark.crash
def test_a_stopped_broker_is_fenced_and_unfenced_when_it_resumes(make_cluster):
    cluster = make_cluster(3)
    stopped = (cluster.describe(0)["controller_id"] + 1) % 3
    watcher = (stopped + 1) % 3
    cluster.sigstop(stopped)
    try:
        answer = cluster.wait_for_brokers(2, via=[watcher], timeout=30)
        # DescribeCluster v2 lists it as fenced to a client that asks (KIP-1073).
        assert answer["fenced"] == [stopped], answer
    finally:
        cluster.sigcont(stopped)
    answer = cluster.wait_for_brokers(3, via=[watcher], timeout=30)
    assert stopped in [b["broker_id"] for b in answer["brokers"]]
    assert answer["fenced"] == []


def _leaderships(cluster, node: int, name: str):
    """{partition: (leader, leader_epoch, isr, offline_replicas, error_code)} as `node` says."""
    try:
        described = topic_partitions(cluster.bootstrap(node), name)
    except Exception:  # noqa: BLE001 - between answers
        return {}
    return {p["partition_index"]: (p["leader_id"], p["leader_epoch"], p["isr_nodes"],
                                   p["offline_replicas"], p["error_code"]) for p in described}


@pytest.mark.crash
def test_a_fenced_leader_takes_its_partitions_and_groups_offline_and_back_with_new_epochs(
        make_cluster, unique_name):
    # Offsets kept by one replica each, as every partition here: the partitions go
    # offline with their broker instead of failing over (test_replication.py has that).
    cluster = make_cluster(3, extra_args=["--offsets-topic-replication-factor", "1"])
    controller = cluster.describe(0)["controller_id"]
    name = unique_name("offline")
    create(cluster.bootstrap(controller), name, partitions=6, factor=1)
    # The first FindCoordinator creates the offsets topic; the coordinator it names may
    # not have applied that yet and answers NOT_COORDINATOR once (Kafka's clients retry).
    wait_until(lambda: _group_offsets(cluster.bootstrap(controller),
                                      "creates-the-offsets-topic") is not None,
               30, interval=0.2, what="the offsets topic served")
    # kafka-python asks any broker; one may not have applied the new topic yet.
    offset_leaders = [p["leader_id"] for p in wait_until(
        lambda: _described(cluster.bootstrap(controller), "__consumer_offsets"), 30,
        interval=0.2, what="the offsets topic described")]
    # A group whose coordinator (the leader of its __consumer_offsets partition) is not the
    # controller, so that stopping it leaves the quorum's leader in place.
    group = next(g for g in (unique_name("offline-group") for _ in range(100))
                 if offset_leaders[java_hash_partition(g, 50)] != controller)
    # A group commits through its coordinator; which broker that is follows the leader of
    # the group's __consumer_offsets partition.
    with producer(cluster.bootstrap(controller)) as p:
        for i in range(60):
            p.send(name, value=b"v%d" % i, partition=i % 6)
        p.flush()
    with consumer(cluster.bootstrap(controller), name, group_id=group, enable_auto_commit=False,
                  auto_offset_reset="earliest") as c:
        assert len(poll_until(c, 60, timeout=60)) == 60
        c.commit()
    coordinator = offset_leaders[java_hash_partition(group, 50)]
    watcher = 3 - controller - coordinator
    before = _leaderships(cluster, watcher, name)
    led = sorted(p for p, (leader, *_rest) in before.items() if leader == coordinator)
    assert led and all(before[p][1] == 0 for p in led), before
    offsets_led = offset_leaders.count(coordinator)

    cluster.sigstop(coordinator)
    try:
        def offline():
            now = _leaderships(cluster, watcher, name)
            return all(now.get(p) == (-1, 1, [coordinator], [coordinator], 5) for p in led)
        wait_until(offline, 30, interval=0.2, what=f"partitions {led} offline")
        # Partitions led by others are untouched; the controller counts the offline ones.
        now = _leaderships(cluster, watcher, name)
        assert all(now[p][:3] == before[p][:3] for p in before if p not in led), now
        assert cluster.metric(controller, "runnel_offline_partitions") == len(led) + offsets_led
        assert cluster.metric(watcher, "runnel_offline_partitions") == 0
    finally:
        cluster.sigcont(coordinator)

    def back():
        now = _leaderships(cluster, watcher, name)
        return all(now.get(p) == (coordinator, 2, [coordinator], [], 0) for p in led)
    wait_until(back, 30, interval=0.2, what=f"partitions {led} led again")
    wait_until(lambda: cluster.metric(controller, "runnel_offline_partitions") == 0, 10,
               what="no offline partitions")
    # The returning coordinator loaded the group's offsets again: they are as committed.
    # The watcher learns that the offsets partition is led again a moment after the
    # controller: until then it answers COORDINATOR_NOT_AVAILABLE (retriable).
    committed = wait_until(lambda: _group_offsets(cluster.bootstrap(watcher), group), 30,
                           interval=0.2, what="the group's coordinator")
    assert {tp.partition: meta.offset for tp, meta in committed[group].items()} == {
        p: 10 for p in range(6)}


def _new_controller(cluster, node: int, old: int):
    """(controller,) once `node` names a controller other than `old` (a tuple: node 0 is
    falsy), else None."""
    try:
        controller = cluster.describe(node)["controller_id"]
    except Exception:  # noqa: BLE001 - between leaders
        return None
    return (controller,) if controller not in (-1, old) else None


@pytest.mark.crash
def test_a_voter_that_lost_its_volume_rejoins_with_the_metadata(make_cluster, unique_name):
    cluster = make_cluster(3)
    names = [unique_name("before-loss") for _ in range(3)]
    for name in names:
        create(cluster.bootstrap(0), name, partitions=1, factor=1)
    lost = 2
    cluster.brokers[lost].kill9()
    shutil.rmtree(cluster.brokers[lost].data_dir)
    mark = cluster.brokers[lost].log_size()
    cluster.brokers[lost].start()
    for name in names:
        assert wait_until(lambda: _described(cluster.bootstrap(lost), name), 60, what=name)
    wait_until(lambda: "joined the metadata quorum" in cluster.brokers[lost].log_text(mark), 60,
               what="the lost voter to be caught up and a voter again")
    log = cluster.brokers[lost].log_text(mark)
    assert "its volume was lost" in log, log[-3000:]
    cluster.wait_for_brokers(3)
    # The voter is back: with any other voter down, the quorum still has a majority.
    survivor = (lost + 1) % 3
    cluster.brokers[(lost + 2) % 3].kill9()
    after = unique_name("after-rejoin")
    create_retrying(cluster.bootstrap(survivor), after, partitions=1, factor=1)
    assert wait_until(lambda: _described(cluster.bootstrap(lost), after), 30, what=after)


def test_a_data_directory_of_another_cluster_is_refused(make_cluster, tmp_path):
    cluster = make_cluster(3)
    cluster_id = cluster.describe(0)["cluster_id"]
    b = cluster.brokers[1]
    b.stop()
    b.extra_args += ["--cluster-id", "another-cluster"]
    with pytest.raises(Exception) as refused:
        b.start()
    assert f'belongs to cluster "{cluster_id}", not to "another-cluster"' in str(refused.value)


def test_a_fourth_broker_follows_the_metadata_without_voting(make_cluster, unique_name):
    cluster = make_cluster(4)
    assert cluster.voters.count("@") == 3
    answer = cluster.describe(3)
    assert sorted(b["broker_id"] for b in answer["brokers"]) == [0, 1, 2, 3]
    assert answer["controller_id"] in (0, 1, 2)
    # Admin changes through the non-voter commit through the quorum and reach everyone.
    name = unique_name("via-learner")
    create(cluster.bootstrap(3), name, partitions=4, factor=2)
    for node in range(4):
        partitions = wait_until(lambda: _described(cluster.bootstrap(node), name), 20,
                                what=f"{name} on node {node}")
        assert sorted(p["leader_id"] for p in partitions) == [0, 1, 2, 3]
    # The non-voter is not needed for a majority: with it and one voter down, the quorum
    # still commits.
    cluster.brokers[3].kill9()
    cluster.brokers[0].kill9()
    after = unique_name("without-learner")
    create_retrying(cluster.bootstrap(1), after, partitions=1, factor=1)
    assert wait_until(lambda: _described(cluster.bootstrap(2), after), 20, what=after)


@pytest.mark.crash
def test_without_a_majority_admin_changes_time_out_and_reads_go_on(make_cluster, unique_name):
    cluster = make_cluster(3)
    existing = unique_name("before-minority")
    create(cluster.bootstrap(0), existing, partitions=3, factor=1)
    wait_until(lambda: _described(cluster.bootstrap(2), existing), 20, what=existing)
    cluster.brokers[0].kill9()
    cluster.brokers[1].kill9()
    # Metadata already known is still served by the survivor (librdkafka asks the brokers
    # that answer); changes need a majority. Without one the dead brokers cannot even be
    # fenced, so a client may first try one of them: it retries, as clients do, until the
    # survivor answers, and what the survivor answers is REQUEST_TIMED_OUT.
    listed = AdminClient({"bootstrap.servers": cluster.bootstrap(2)}).list_topics(existing, timeout=15)
    assert sorted(listed.topics[existing].partitions) == [0, 1, 2]
    answers = []

    def attempt():
        try:
            create(cluster.bootstrap(2), unique_name("in-minority"), partitions=1, factor=1)
            answers.append("created")
        except RequestTimedOutError:
            answers.append("timed out")
        except KafkaError as e:  # a dead broker tried first
            answers.append(type(e).__name__)
            return False
        return True

    wait_until(attempt, 90, interval=0.5, what="an answer from the survivor")
    assert answers[-1] == "timed out", answers
    cluster.brokers[0].start()
    after = unique_name("majority-back")
    create_retrying(cluster.bootstrap(2), after, partitions=1, factor=1)
    assert wait_until(lambda: _described(cluster.bootstrap(0), after), 20, what=after)


def test_admin_changes_through_any_broker_are_seen_by_every_broker(make_cluster, unique_name):
    cluster = make_cluster(3)
    grown, doomed = unique_name("grown"), unique_name("doomed")
    create(cluster.bootstrap(0), grown, partitions=3, factor=1)
    create(cluster.bootstrap(0), doomed, partitions=1, factor=1)
    for name in (grown, doomed):
        wait_until(lambda: _described(cluster.bootstrap(2), name), 20, what=name)
    with admin_client(cluster.bootstrap(1)) as admin:
        admin.create_partitions({grown: 5})
    with admin_client(cluster.bootstrap(2)) as admin:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, grown,
                                            configs={"retention.ms": "12345"})])
    with admin_client(cluster.bootstrap(0)) as admin:
        admin.delete_topics([doomed])

    def settled(node: int):
        partitions = _described(cluster.bootstrap(node), grown)
        if partitions is None or len(partitions) != 5:
            return False
        with admin_client(cluster.bootstrap(node)) as admin:
            if doomed in admin.list_topics():
                return False
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, grown)])
        return configs["topic"][grown]["retention.ms"]["value"] == "12345"

    for node in range(3):
        wait_until(lambda: settled(node), 20, interval=0.2, what=f"the changes on node {node}")
    # The new partitions are hosted by their leaders: records go in and come back.
    with producer(cluster.bootstrap(2), acks="all") as p:
        offsets = [p.send(grown, value=b"new-%d" % n, partition=n).get(timeout=30).offset
                   for n in (3, 4)]
    assert offsets == [0, 0]
    with consumer(cluster.bootstrap(0), enable_auto_commit=False) as c:
        tps = [TopicPartition(grown, 3), TopicPartition(grown, 4)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        got = poll_until(c, 2, timeout=30)
    assert sorted(r.value for r in got) == [b"new-3", b"new-4"]
