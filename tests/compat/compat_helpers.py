"""Small helpers shared by the compatibility tests: kafka-python and confluent-kafka
(`ck_*`) admin/produce/consume with bounded waits."""

from __future__ import annotations

import contextlib
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin import NewTopic as CkNewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError as KafkaPythonError

CLIENT_TIMEOUT_MS = 15000


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Polls `predicate` until it returns a truthy value (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def admin_client(bootstrap: str, **config):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=CLIENT_TIMEOUT_MS,
                             client_id="compat-admin", **config)
    try:
        yield admin
    finally:
        admin.close()


@contextlib.contextmanager
def producer(bootstrap: str, **config):
    config.setdefault("request_timeout_ms", CLIENT_TIMEOUT_MS)
    config.setdefault("max_block_ms", CLIENT_TIMEOUT_MS)
    p = KafkaProducer(bootstrap_servers=bootstrap, client_id="compat-producer", **config)
    try:
        yield p
    finally:
        p.close(timeout=10)


@contextlib.contextmanager
def consumer(bootstrap: str, *topics, **config):
    config.setdefault("request_timeout_ms", 30000)
    c = KafkaConsumer(*topics, bootstrap_servers=bootstrap, client_id="compat-consumer", **config)
    try:
        yield c
    finally:
        c.close(autocommit=False)


def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None):
    """Creates a topic through the admin API (NewTopic, as users write it) and waits until
    its metadata shows every partition with a leader."""
    with admin_client(bootstrap) as admin:
        admin.create_topics([NewTopic(name=name, num_partitions=partitions, replication_factor=1,
                                      topic_configs=configs or {})])
        admin.wait_for_topics([name], timeout_ms=10000)


def produce_values(bootstrap: str, topic: str, values, partition: int | None = 0, **config):
    """Sends `values` (bytes) one by one, waiting for each ack; returns the RecordMetadata list."""
    out = []
    with producer(bootstrap, **config) as p:
        for v in values:
            out.append(p.send(topic, value=v, partition=partition).get(timeout=30))
    return out


def read_partition(bootstrap: str, topic: str, partition: int, expected: int,
                   start: int | None = 0, timeout: float = 20.0, **config):
    """Reads `expected` records from one partition by assign+seek (no group), within `timeout`.
    Returns what was read (possibly fewer, on timeout, or more if the partition has more
    records already fetched)."""
    tp = TopicPartition(topic, partition)
    records = []
    with consumer(bootstrap, enable_auto_commit=False, **config) as c:
        c.assign([tp])
        if start is None:
            c.seek_to_beginning(tp)
        else:
            c.seek(tp, start)
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            batch = c.poll(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    return records


def poll_until(c, expected: int, timeout: float = 20.0):
    """Polls an existing consumer until `expected` records arrived or `timeout` passed."""
    records = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            records.extend(recs)
    return records


# --- confluent-kafka -------------------------------------------------------------------

def ck_producer_conf(bootstrap: str, **extra) -> dict:
    conf = {"bootstrap.servers": bootstrap, "client.id": "compat-confluent",
            "message.timeout.ms": 30000, "socket.timeout.ms": 10000}
    conf.update(extra)
    return conf


def ck_consumer_conf(bootstrap: str, **extra) -> dict:
    conf = {"bootstrap.servers": bootstrap, "client.id": "compat-confluent",
            # required by the client even for assign(); nothing is committed
            "group.id": f"compat-unused-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "enable.partition.eof": False, "auto.offset.reset": "error"}
    conf.update(extra)
    return conf


def ck_produce_all(bootstrap: str, topic: str, records, partition: int = 0, **extra):
    """Produces (key, value, headers) tuples; returns the delivery reports in order as
    (error, partition, offset, key, value)."""
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.partition(), msg.offset(), msg.key(), msg.value()))

    p = Producer(ck_producer_conf(bootstrap, **extra))
    for key, value, headers in records:
        p.produce(topic, value=value, key=key, headers=headers, partition=partition,
                  on_delivery=on_delivery)
        p.poll(0)
    remaining = p.flush(30)
    assert remaining == 0, f"{remaining} messages not delivered within 30s"
    return reports


def ck_consume_partition(bootstrap: str, topic: str, partition: int, expected: int | None,
                         start: int = OFFSET_BEGINNING, timeout: float = 30.0):
    """Reads one partition by assign() from `start` until `expected` messages arrived
    (None: up to the high watermark read first) or `timeout` passed."""
    c = Consumer(ck_consumer_conf(bootstrap))
    got, errors = [], []
    try:
        if expected is None:
            low, high = c.get_watermark_offsets(CkTopicPartition(topic, partition), timeout=10)
            expected = high - (low if start == OFFSET_BEGINNING else start)
        c.assign([CkTopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                errors.append(msg.error())
                if msg.error().fatal():
                    break
                continue
            got.append(msg)
    finally:
        c.close()
    assert not [e for e in errors if e.code() != KafkaError._PARTITION_EOF], errors
    return got


def ck_create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([CkNewTopic(name, num_partitions=partitions, replication_factor=1,
                                              config=config or {})], operation_timeout=10)
    futures[name].result(timeout=30)
    ck_wait_for_topic(admin, name, partitions)
    return admin


def ck_wait_for_topic(admin: AdminClient, name: str, partitions: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return t
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {name} not visible with {partitions} partitions: {t}")
        time.sleep(0.1)


# --- requests to one broker -------------------------------------------------------------

class NodeAdmin:
    """Admin requests answered by one broker, the one at `bootstrap`.

    KafkaAdminClient spreads its requests over the brokers it learnt of: DescribeCluster
    and Metadata go to the least loaded one, CreateTopics to the controller. To see a
    cluster as one broker sees it (a broker cut off from the others, say), this sends
    kafka-python's own request objects to that broker's node id through the client's
    connection manager (kafka-python 3.0 internals: `_manager`)."""

    def __init__(self, bootstrap: str):
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap,
                                      request_timeout_ms=CLIENT_TIMEOUT_MS,
                                      client_id="compat-node-admin")
        host, port = bootstrap.rsplit(":", 1)
        manager = self.admin._manager
        ids = [b.node_id for b in manager.cluster.brokers()
               if (b.host, b.port) == (host, int(port))]
        if not ids:
            self.admin.close()
            raise KafkaPythonError(f"{bootstrap} does not list itself among the brokers")
        self.node_id = ids[0]

    def send(self, request):
        manager = self.admin._manager

        async def send():
            return await manager.send(request, node_id=self.node_id)
        return manager.run(send)

    def describe_cluster(self) -> dict:
        """DescribeCluster v2 with fenced brokers, as kafka-python's describe_cluster."""
        from kafka.errors import for_code
        from kafka.protocol.admin import DescribeClusterRequest
        response = self.send(DescribeClusterRequest(include_cluster_authorized_operations=False,
                                                    include_fenced_brokers=True))
        if response.error_code:
            raise for_code(response.error_code)(response.error_message)
        return response.to_dict()

    def topic_names(self) -> set[str]:
        from kafka.protocol.metadata import MetadataRequest
        response = self.send(MetadataRequest(topics=None))
        return {t.name for t in response.topics}

    def leaderships(self, topic: str) -> dict[int, tuple[int, int, list[int]]] | None:
        """{partition: (leader, leader epoch, sorted ISR)} of `topic` in this broker's
        Metadata, or None when it does not list the topic."""
        from kafka.protocol.metadata import MetadataRequest
        response = self.send(MetadataRequest(topics=None))
        for t in response.topics:
            if t.name == topic and t.error_code == 0:
                return {p.partition_index: (p.leader_id, p.leader_epoch, sorted(p.isr_nodes))
                        for p in t.partitions}
        return None

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        """CreateTopics of one topic; raises the kafka-python error of the code the broker answers."""
        from kafka.errors import for_code
        from kafka.protocol.admin import CreateTopicsRequest
        topics = self.admin._process_create_topics_input(
            {name: {"num_partitions": partitions, "replication_factor": replication_factor}})
        response = self.send(CreateTopicsRequest(topics=topics, timeout_ms=CLIENT_TIMEOUT_MS,
                                                 validate_only=False))
        (topic,) = response.topics
        if topic.error_code:
            raise for_code(topic.error_code)(f"{name}: {topic.error_message}")

    def close(self) -> None:
        self.admin.close()


@contextlib.contextmanager
def node_admin(bootstrap: str):
    admin = NodeAdmin(bootstrap)
    try:
        yield admin
    finally:
        admin.close()


def java_hash_partition(key: str, partitions: int) -> int:
    """Kafka's partition of a group's offsets: abs(String.hashCode()) % partitions."""
    h = 0
    for unit in key.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    return (0 if h == -(1 << 31) else abs(h)) % partitions
