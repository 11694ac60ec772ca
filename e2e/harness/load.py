"""Client load for the scenarios: a producer that writes acks=all records until stopped,
keeping what the brokers acknowledged, and a reader that reads partitions to their end.

Both use kafka-python on the cluster's bootstrap name; every wait has a deadline."""

from __future__ import annotations

import collections
import threading
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition


class Producing:
    """A thread writing numbered records (`<prefix><n>`) round-robin over the partitions
    of `topic` with acks=all and idempotence, until `finish()`; `acked` holds the values
    the brokers acknowledged, `failed` those that failed after the client's retries."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, prefix: str = "r",
                 interval_s: float = 0.02):
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
            retry_backoff_ms=200, delivery_timeout_ms=120000, request_timeout_ms=30000)
        self.topic, self.partitions, self.prefix = topic, partitions, prefix
        self.interval_s = interval_s
        self.acked: list[bytes] = []
        self.failed: list[tuple[bytes, Exception]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"producing-{topic}")

    def start(self) -> "Producing":
        self.thread.start()
        return self

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            value = f"{self.prefix}{i}".encode()
            future = self.producer.send(self.topic, value=value, partition=i % self.partitions)
            future.add_callback(lambda _m, v=value: self.acked.append(v))
            future.add_errback(lambda e, v=value: self.failed.append((v, e)))
            i += 1
            self.stop.wait(self.interval_s)

    def finish(self) -> None:
        """Stops writing and waits (bounded) for every record sent to be answered."""
        self.stop.set()
        self.thread.join(timeout=10)
        self.producer.flush(timeout=120)
        self.producer.close(timeout=10)


def read_all(bootstrap: str, topic: str, partitions: int,
             timeout_s: float = 60) -> collections.Counter:
    """Every record of `topic` up to each partition's end offset now, counted by value."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             request_timeout_ms=30000)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(tps)
        read: collections.Counter = collections.Counter()
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                behind = {tp.partition: (consumer.position(tp), ends[tp]) for tp in tps}
                raise TimeoutError(f"reading {topic} did not reach its end: {behind}")
            for records in consumer.poll(timeout_ms=1000).values():
                read.update(record.value for record in records)
        return read
    finally:
        consumer.close()


def assert_acked_once(acked: list[bytes], read: collections.Counter) -> None:
    """Every acknowledged value was read exactly once."""
    missing = [v for v in acked if read[v] == 0]
    doubled = [v for v in acked if read[v] > 1]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records are gone, " \
                        f"e.g. {missing[:5]}"
    assert not doubled, f"{len(doubled)} acknowledged records were read more than once, " \
                        f"e.g. {doubled[:5]}"
