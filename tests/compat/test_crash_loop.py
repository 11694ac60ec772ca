"""Crash loop: what a client was told is stored survives repeated kill -9, once, in place.

One idempotent acks=all confluent-kafka producer writes to several partitions of one topic
while the broker is SIGKILLed at random moments and restarted on the same data dir and
port, CRASH_CYCLES times; the producer is never restarted (its retries absorb each
outage). Every acknowledged (partition, offset, value) is recorded from the delivery
reports. After the last cycle each partition is read from its start to its high
watermark: every acknowledged record is there exactly once, at the offset it was
acknowledged with; a record never acknowledged may be there, but never twice.

    CRASH_CYCLES  kill/restart cycles (default 5: the short form in `make test`;
                  `make crash-loop` runs 50)
    CRASH_SEED    seed of the RNG that picks the kill moments (default 1212; printed).
                  The seed fixes the delays, not the interleaving with the producer.
"""

from __future__ import annotations

import os
import random
import threading
import time
from array import array

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as CkTopicPartition

from compat_helpers import ck_consumer_conf, ck_producer_conf, create_topic, wait_until

CYCLES = int(os.environ.get("CRASH_CYCLES", "5"))
SEED = int(os.environ.get("CRASH_SEED", "1212"))
PARTITIONS = 6
# Small segments, so that kills also land around segment rolls and producer-state snapshots.
SEGMENT_BYTES = 128 * 1024
# A batch larger than a segment is refused (RECORD_LIST_TOO_LARGE), and librdkafka builds big
# batches from what queued during an outage: keep them well below a segment.
BATCH_BYTES = 32 * 1024
# A value is a 10-digit record number and padding (values are unique across the topic).
VALUE_DIGITS = 10
VALUE_PAD = b"." * 90
# Before a "flowing" kill: this many acknowledgements since the restart, on every partition.
ACKS_BEFORE_KILL = 300
MAX_KILL_DELAY_S = 1.5
# Otherwise the kill comes right after the restart, while the producer's retries arrive.
EARLY_KILL_CHANCE = 0.25
MAX_EARLY_KILL_DELAY_S = 0.3
RESUME_TIMEOUT_S = 60.0
MESSAGE_TIMEOUT_MS = 120_000
# The producer is paced (bursts of 50 records, then up to 5 ms serving delivery reports)
# so that it leaves CPU to the broker on a small machine.
PRODUCE_BURST = 50
PRODUCE_PAUSE_S = 0.005


class ProducerFailed(AssertionError):
    pass


class AckRecorder:
    """Produces record numbers 0, 1, 2, ... round-robin over the partitions (number n to
    partition n % partitions) from a background thread, with one idempotent acks=all
    producer. Keeps every acknowledged (offset, number) per partition in delivery order,
    and counts failed deliveries. Delivery reports are served on the producing thread
    (and by `stop`'s flush), the counts read from the test thread under a lock."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.topic = topic
        self.partitions = partitions
        self.acked_offsets = [array("q") for _ in range(partitions)]
        self.acked_values = [array("q") for _ in range(partitions)]
        self.failed = 0
        self.failed_sample: list[str] = []
        self.sent = 0
        self.fatal: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.producer = Producer(ck_producer_conf(bootstrap, **{
            "client.id": "compat-crash-loop",
            "enable.idempotence": True, "acks": "all", "linger.ms": 5, "batch.size": BATCH_BYTES,
            "message.timeout.ms": MESSAGE_TIMEOUT_MS, "retry.backoff.ms": 100,
            "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
            "queue.buffering.max.messages": 20000, "log.connection.close": False,
            "error_cb": self._on_error,
        }))
        self.thread = threading.Thread(target=self._run, name="crash-loop-producer", daemon=True)

    def _on_error(self, err):
        with self._lock:
            if err.fatal() and self.fatal is None:
                self.fatal = f"{err.name()}: {err.str()}"

    def _on_delivery(self, err, msg):
        n = int(msg.value()[:VALUE_DIGITS])
        with self._lock:
            if err is None:
                self.acked_offsets[msg.partition()].append(msg.offset())
                self.acked_values[msg.partition()].append(n)
            else:
                self.failed += 1
                if len(self.failed_sample) < 10:
                    self.failed_sample.append(f"record {n} to partition {msg.partition()}: {err}")

    def _run(self):
        try:
            while not self._stop.is_set():
                for _ in range(PRODUCE_BURST):
                    n = self.sent
                    try:
                        self.producer.produce(self.topic, value=b"%0*d" % (VALUE_DIGITS, n) + VALUE_PAD,
                                              partition=n % self.partitions,
                                              on_delivery=self._on_delivery)
                    except BufferError:
                        break  # the local queue is full while the broker is down
                    self.sent += 1
                self.producer.poll(PRODUCE_PAUSE_S)
        except KafkaException as e:  # fatal: this producer can send nothing more
            with self._lock:
                self.fatal = self.fatal or str(e)

    def start(self) -> "AckRecorder":
        self.thread.start()
        return self

    def acked_counts(self) -> list[int]:
        """Acknowledged so far per partition; raises ProducerFailed once the producer failed
        fatally, so that waits on it end at once."""
        with self._lock:
            if self.fatal is not None:
                raise ProducerFailed(f"the idempotent producer failed fatally: {self.fatal}")
            return [len(a) for a in self.acked_values]

    def stop(self, flush_timeout: float = 90) -> int:
        """Stops producing and waits for outstanding deliveries; returns how many remain."""
        self._stop.set()
        self.thread.join(timeout=10)
        remaining = self.producer.flush(flush_timeout)
        self.producer = None  # destroyed here, not by the garbage collector after the broker stops
        return remaining


def wait_for_flow(stream: AckRecorder, what: str):
    """Waits until the producer has had ACKS_BEFORE_KILL acknowledgements, at least one on
    every partition, since this call."""
    base = stream.acked_counts()

    def flowing():
        now = stream.acked_counts()
        return sum(now) - sum(base) >= ACKS_BEFORE_KILL and all(n > b for n, b in zip(now, base))

    wait_until(flowing, timeout=RESUME_TIMEOUT_S, what=what)


def read_partition_log(bootstrap: str, topic: str, partition: int, timeout: float):
    """Every record of one partition, from its log start to the high watermark read first:
    (log start, high watermark, offsets, record numbers)."""
    c = Consumer(ck_consumer_conf(bootstrap, **{"client.id": "compat-crash-loop-check"}))
    offsets, values = array("q"), array("q")
    try:
        low, high = c.get_watermark_offsets(CkTopicPartition(topic, partition), timeout=10)
        c.assign([CkTopicPartition(topic, partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        next_offset = low
        while next_offset < high:
            if time.monotonic() > deadline:
                raise TimeoutError(f"partition {partition}: read up to offset {next_offset} of "
                                   f"{high} in {timeout:.0f}s")
            for msg in c.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"partition {partition}: consume error {msg.error()}")
                offsets.append(msg.offset())
                values.append(int(msg.value()[:VALUE_DIGITS]))
                next_offset = msg.offset() + 1
    finally:
        c.close()
    return low, high, offsets, values


def check_logs(stream: AckRecorder, logs, kill_marks: list[list[int]]) -> tuple[list[str], int]:
    """Compares the partitions' logs with the acknowledgements; returns the problems found
    and how many records the logs hold. `kill_marks[c]` is the per-partition acknowledged
    count when the kill of cycle c + 1 was sent, so a problem can be placed in its cycle."""
    problems: list[str] = []
    sent = stream.sent
    # Where each record number was first seen: partition + 1 (0: nowhere) and offset.
    seen_partition = bytearray(sent)
    seen_offset = array("q", [-1]) * sent
    read_back = 0
    for p, (low, high, offsets, values) in enumerate(logs):
        read_back += len(offsets)
        if low != 0:
            problems.append(f"partition {p}: log start offset {low}, expected 0")
        if len(offsets) != high - low or any(o != low + i for i, o in enumerate(offsets)):
            problems.append(f"partition {p}: offsets are not contiguous from {low} to {high} "
                            f"({len(offsets)} records read)")
        previous = -1
        for o, n in zip(offsets, values):
            if not 0 <= n < sent or n % stream.partitions != p:
                problems.append(f"partition {p} offset {o}: record {n} was never sent to it")
                continue
            if seen_partition[n]:
                problems.append(f"duplicate: record {n} at partition {p} offset {o}, first at "
                                f"partition {seen_partition[n] - 1} offset {seen_offset[n]}")
                continue
            if n < previous:
                problems.append(f"partition {p} offset {o}: record {n} after record {previous}")
            previous = n
            seen_partition[n] = p + 1
            seen_offset[n] = o

    def cycle_of(p: int, ack_index: int) -> str:
        for c, marks in enumerate(kill_marks):
            if ack_index < marks[p]:
                return f"acknowledged before the kill of cycle {c + 1}"
        return "acknowledged after the last restart"

    for p in range(stream.partitions):
        for i, (o, n) in enumerate(zip(stream.acked_offsets[p], stream.acked_values[p])):
            if not seen_partition[n]:
                problems.append(f"lost: record {n} acknowledged at partition {p} offset {o} "
                                f"({cycle_of(p, i)}) is not in the log")
            elif seen_partition[n] != p + 1 or seen_offset[n] != o:
                problems.append(f"moved: record {n} acknowledged at partition {p} offset {o} "
                                f"({cycle_of(p, i)}) is at partition {seen_partition[n] - 1} "
                                f"offset {seen_offset[n]}")
    return problems, read_back


@pytest.mark.crash
@pytest.mark.timeout(180 + 30 * CYCLES)
def test_crash_loop_keeps_every_acknowledged_record_once_at_its_offset(make_broker, topic):
    rng = random.Random(SEED)
    print(f"\ncrash loop: seed {SEED} (CRASH_SEED), {CYCLES} cycles (CRASH_CYCLES), "
          f"{PARTITIONS} partitions", flush=True)
    started = time.monotonic()
    b = make_broker()
    create_topic(b.bootstrap, topic, partitions=PARTITIONS,
                 configs={"segment.bytes": str(SEGMENT_BYTES)})
    stream = AckRecorder(b.bootstrap, topic, PARTITIONS).start()

    kill_marks: list[list[int]] = []
    in_flight_at_kills = 0  # sent but not yet acknowledged when a kill was sent
    interrupted: str | None = None
    try:
        for cycle in range(1, CYCLES + 1):
            if rng.random() < EARLY_KILL_CHANCE:
                delay = rng.uniform(0, MAX_EARLY_KILL_DELAY_S)
            else:
                wait_for_flow(stream, f"the producer to flow again before the kill of cycle {cycle}")
                delay = rng.uniform(0, MAX_KILL_DELAY_S)
            time.sleep(delay)  # the random moment of the crash, not a synchronisation
            kill_marks.append(stream.acked_counts())
            in_flight_at_kills += stream.sent - sum(kill_marks[-1])
            b.kill9()
            b.start()  # same port, same data dir
        wait_for_flow(stream, "the producer to flow again after the last restart")
    except (ProducerFailed, TimeoutError) as e:
        interrupted = f"cycle {len(kill_marks)}: {e}"
    unflushed = stream.stop()

    logs = [read_partition_log(b.bootstrap, topic, p, timeout=120) for p in range(PARTITIONS)]
    problems, read_back = check_logs(stream, logs, kill_marks)
    acked = sum(len(a) for a in stream.acked_values)
    if interrupted is not None:
        problems.insert(0, f"the loop stopped early, {interrupted}")
    if stream.fatal is not None:
        problems.insert(0, f"the idempotent producer failed fatally: {stream.fatal}")
    if unflushed:
        problems.append(f"{unflushed} records still undelivered after the last restart")
    if stream.failed:
        # The retries must absorb every outage: a failed delivery is a refused batch.
        problems.append(f"{stream.failed} deliveries failed, first: {stream.failed_sample}")
    result = "PASS" if not problems else f"FAIL ({len(problems)} problems)"
    print(f"crash loop: seed={SEED} cycles={len(kill_marks)}/{CYCLES} partitions={PARTITIONS} "
          f"sent={stream.sent} in_flight_at_kills={in_flight_at_kills} acknowledged={acked} "
          f"failed_deliveries={stream.failed} "
          f"read_back={read_back} result={result} in {time.monotonic() - started:.1f}s", flush=True)
    assert not problems, (f"seed {SEED}: " + "\n".join(problems[:40])
                          + (f"\n... {len(problems) - 40} more" if len(problems) > 40 else ""))
