#!/usr/bin/env python3
"""Records the request frames real Kafka clients send, for the fuzzer's corpus (fuzz/corpus).

A small recording TCP proxy sits in front of a real runnel-broker (which advertises the
proxy's address, so every connection of every client goes through it). kafka-python,
confluent-kafka, kafkajs and kcat then produce, consume with and without groups, and
administer topics, configs, groups and offsets. Each request frame a client sends is saved,
without its 4-byte size prefix, as <out>/<client>/<n>.bin; frames that differ only in the
correlation id are kept once, and at most a few per (client, API, version).

`scripts/capture-corpus.sh` runs this and then names, selects and completes the frames
(`runnel-fuzz derive-corpus`). Usage:

    .venv/bin/python scripts/capture-corpus.py --broker-bin target/debug/runnel-broker --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEEP_PER_VERSION = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """Saves client→broker frames under the current client's label."""

    def __init__(self, out: Path):
        self.out = out
        self.label = "unlabelled"
        self.seen: set[bytes] = set()
        self.per_version: dict[tuple[str, int, int], int] = {}
        self.count = 0
        self.lock = threading.Lock()

    def record(self, frame: bytes) -> None:
        if len(frame) < 8:
            return
        key = int.from_bytes(frame[0:2], "big", signed=True)
        version = int.from_bytes(frame[2:4], "big", signed=True)
        # The correlation id (bytes 4..8) differs in every request: not part of identity.
        digest = hashlib.sha256(frame[:4] + frame[8:]).digest()
        with self.lock:
            slot = (self.label, key, version)
            if digest in self.seen or self.per_version.get(slot, 0) >= KEEP_PER_VERSION:
                return
            self.seen.add(digest)
            self.per_version[slot] = self.per_version.get(slot, 0) + 1
            self.count += 1
            d = self.out / self.label
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{self.count:05}.bin").write_bytes(frame)


class Proxy:
    """An asyncio TCP proxy on its own thread; parses the client side into frames."""

    def __init__(self, recorder: Recorder, listen_port: int, upstream_port: int):
        self.recorder = recorder
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the recording proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.listen_port))
        self.ready.set()
        self.loop.run_forever()
        server.close()

    async def _client(self, creader, cwriter) -> None:
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(self._pipe(creader, uwriter, record=True),
                             self._pipe(ureader, cwriter, record=False),
                             return_exceptions=True)

    async def _pipe(self, reader, writer, record: bool) -> None:
        buf = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
                if record:
                    buf += data
                    while len(buf) >= 4:
                        size = int.from_bytes(buf[:4], "big", signed=True)
                        if size < 0 or len(buf) < 4 + size:
                            break
                        self.recorder.record(buf[4:4 + size])
                        buf = buf[4 + size:]
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


def attempt(what: str, fn, *args, **kwargs):
    """Runs one client operation; failures are logged, not fatal (the frames are what counts)."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - any client error is acceptable here
        print(f"  {what}: {type(e).__name__}: {e}"[:300], file=sys.stderr)
        return None


# --- kafka-python --------------------------------------------------------------------------

def kafka_python(bootstrap: str, api_version) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic

    common = {"bootstrap_servers": bootstrap, "request_timeout_ms": 10000}
    if api_version is not None:
        common["api_version"] = api_version
    tag = "auto" if api_version is None else "-".join(map(str, api_version))
    topic, group = f"kp-{tag}-{uuid.uuid4().hex[:6]}", f"kp-group-{tag}"
    admin = attempt("admin", KafkaAdminClient, client_id="capture-kafka-python", **common)
    if admin is not None:
        attempt("create_topics", admin.create_topics,
                [NewTopic(topic, 2, 1, topic_configs={"retention.ms": "3600000"})])
        attempt("create_topics validate_only", admin.create_topics,
                [NewTopic(topic + "-v", 1, 1)], validate_only=True)
        attempt("wait_for_topics", admin.wait_for_topics, [topic], timeout_ms=10000)
        attempt("describe_topics", admin.describe_topics, [topic])
        attempt("describe_cluster", admin.describe_cluster)
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000"})
        attempt("describe_configs", admin.describe_configs,
                [ConfigResource(ConfigResourceType.TOPIC, topic)], include_synonyms=True)
        attempt("describe_configs broker", admin.describe_configs,
                [ConfigResource(ConfigResourceType.BROKER, "0")])
        attempt("alter_configs", admin.alter_configs, [resource], incremental=False)
        attempt("incremental alter_configs", admin.alter_configs, [resource], incremental=True)
        attempt("create_partitions", admin.create_partitions, {topic: NewPartitions(3)})
    producer = attempt("producer", KafkaProducer, client_id="capture-kafka-python",
                       acks="all", linger_ms=5, **common)
    if producer is not None:
        for i in range(20):
            attempt("send", producer.send, topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                    headers=[("h", b"1")], partition=i % 2)
        attempt("flush", producer.flush, 10)
        attempt("close", producer.close, 5)
    producer = attempt("producer acks=1", KafkaProducer, acks=1, enable_idempotence=False,
                       compression_type="gzip", **common)
    if producer is not None:
        attempt("send", producer.send, topic, value=b"gzip" * 20, partition=0)
        attempt("flush", producer.flush, 10)
        attempt("close", producer.close, 5)
    consumer = attempt("consumer", KafkaConsumer, topic, group_id=group, auto_offset_reset="earliest",
                       enable_auto_commit=False, heartbeat_interval_ms=200, session_timeout_ms=6000,
                       fetch_max_wait_ms=100, consumer_timeout_ms=4000, **common)
    if consumer is not None:
        got = 0
        deadline = time.time() + 12
        while got < 20 and time.time() < deadline:
            batch = attempt("poll", consumer.poll, timeout_ms=500) or {}
            got += sum(len(v) for v in batch.values())
        time.sleep(0.5)  # a heartbeat or two
        attempt("commit", consumer.commit)
        tp = TopicPartition(topic, 0)
        attempt("committed", consumer.committed, tp)
        attempt("offsets_for_times", consumer.offsets_for_times, {tp: 0})
        attempt("end_offsets", consumer.end_offsets, [tp])
        attempt("beginning_offsets", consumer.beginning_offsets, [tp])
        attempt("close", consumer.close)
    if admin is not None:
        attempt("list_groups", admin.list_groups)
        attempt("describe_groups", admin.describe_groups, [group])
        attempt("list_group_offsets", admin.list_group_offsets, {group: None})
        attempt("alter_group_offsets", admin.alter_group_offsets, group,
                {TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)})
        attempt("delete_group_offsets", admin.delete_group_offsets, group, [TopicPartition(topic, 1)])
        attempt("list_partition_offsets", admin.list_partition_offsets,
                {TopicPartition(topic, 0): -1})
        attempt("delete_records", admin.delete_records, {TopicPartition(topic, 0): 1})
        attempt("delete_groups", admin.delete_groups, [group])
        attempt("delete_topics", admin.delete_topics, [topic])
        attempt("close", admin.close)


# --- confluent-kafka -----------------------------------------------------------------------

def confluent(bootstrap: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition, IsolationLevel
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                       NewPartitions, NewTopic, OffsetSpec)
    from confluent_kafka import ConsumerGroupTopicPartitions

    # librdkafka always negotiates its versions with ApiVersions: one run covers it.
    topic, group = f"ck-{uuid.uuid4().hex[:6]}", "ck-group"
    conf = {"bootstrap.servers": bootstrap, "client.id": "capture-confluent"}

    def wait(futures):
        for f in (futures or {}).values():
            attempt("admin future", f.result, 10)

    admin = AdminClient(conf)
    wait(attempt("create_topics", admin.create_topics,
                 [NewTopic(topic, 2, 1, config={"cleanup.policy": "delete"})], operation_timeout=10))
    attempt("list_topics", admin.list_topics, timeout=10)
    resource = ConfigResource("topic", topic, set_config={"retention.ms": "7200000"})
    wait(attempt("describe_configs", admin.describe_configs, [ConfigResource("topic", topic)]))
    wait(attempt("alter_configs", admin.alter_configs, [resource]))
    inc = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    wait(attempt("incremental_alter_configs", admin.incremental_alter_configs, [inc]))
    wait(attempt("create_partitions", admin.create_partitions, [NewPartitions(topic, 3)]))
    f = attempt("describe_cluster", admin.describe_cluster)
    if f is not None:
        attempt("describe_cluster result", f.result, 10)
    p = Producer({**conf, "enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4"})
    for i in range(20):
        attempt("produce", p.produce, topic, key=f"k{i}", value=f"v{i}", partition=i % 2,
                headers=[("h", b"1")])
    attempt("flush", p.flush, 10)
    p = Producer({**conf, "acks": 1, "enable.idempotence": False})
    attempt("produce", p.produce, topic, value=b"x" * 50, partition=0)
    attempt("flush", p.flush, 10)
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "heartbeat.interval.ms": 200,
                  "session.timeout.ms": 6000, "fetch.wait.max.ms": 100})
    c.subscribe([topic])
    got, deadline = 0, time.time() + 15
    while got < 20 and time.time() < deadline:
        m = attempt("poll", c.poll, 0.5)
        if m is not None and not m.error():
            got += 1
    time.sleep(0.5)
    attempt("commit", c.commit, asynchronous=False)
    attempt("committed", c.committed, [TopicPartition(topic, 0)], 10)
    attempt("offsets_for_times", c.offsets_for_times, [TopicPartition(topic, 0, 0)], 10)
    attempt("get_watermark_offsets", c.get_watermark_offsets, TopicPartition(topic, 0), 10)
    attempt("close", c.close)
    wait(attempt("list_offsets", admin.list_offsets,
                 {TopicPartition(topic, 0): OffsetSpec.latest(),
                  TopicPartition(topic, 1): OffsetSpec.earliest()},
                 isolation_level=IsolationLevel.READ_COMMITTED))
    wait(attempt("list_offsets by time", admin.list_offsets,
                 {TopicPartition(topic, 0): OffsetSpec.for_timestamp(0)}))
    f = attempt("list_consumer_groups", admin.list_consumer_groups)
    if f is not None:
        attempt("list_consumer_groups result", f.result, 10)
    wait(attempt("describe_consumer_groups", admin.describe_consumer_groups, [group]))
    wait(attempt("list_consumer_group_offsets", admin.list_consumer_group_offsets,
                 [ConsumerGroupTopicPartitions(group)]))
    wait(attempt("alter_consumer_group_offsets", admin.alter_consumer_group_offsets,
                 [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1)])]))
    wait(attempt("delete_records", admin.delete_records, [TopicPartition(topic, 0, 1)]))
    wait(attempt("delete_consumer_groups", admin.delete_consumer_groups, [group]))
    wait(attempt("delete_topics", admin.delete_topics, [topic], operation_timeout=10))


# --- kafkajs and kcat ----------------------------------------------------------------------

def kafkajs(bootstrap: str) -> None:
    node_modules = REPO / "tests" / "compat" / "js" / "node_modules"
    env = {**os.environ, "NODE_PATH": str(node_modules)}
    script = REPO / "scripts" / "capture-corpus.js"
    proc = subprocess.run(["node", str(script), bootstrap], env=env, capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        print(f"  kafkajs exited {proc.returncode}: {proc.stderr[-1000:]}", file=sys.stderr)


def kcat(bootstrap: str) -> None:
    exe = shutil.which("kcat")
    if exe is None:
        print("  kcat is not installed (scripts/test-deps.sh installs it)", file=sys.stderr)
        return
    topic = f"kcat-{uuid.uuid4().hex[:6]}"

    def run(*args: str, stdin: str | None = None) -> None:
        try:
            subprocess.run([exe, "-b", bootstrap, *args], input=stdin, capture_output=True,
                           text=True, timeout=30)
        except subprocess.TimeoutExpired:
            print(f"  kcat {' '.join(args)}: timed out", file=sys.stderr)

    run("-L")
    run("-P", "-t", topic, "-p", "0", "-K:", "-X", "compression.codec=snappy",
        stdin="".join(f"k{i}:v{i}\n" for i in range(20)))
    run("-P", "-t", topic, "-p", "0", "-X", "acks=all", stdin="a\nb\n")
    run("-C", "-t", topic, "-p", "0", "-o", "beginning", "-e")
    run("-Q", "-t", f"{topic}:0:0")
    run("-G", f"kcat-group-{topic}", "-o", "beginning", "-e", "-X", "heartbeat.interval.ms=200",
        "-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=100", topic)
    run("-L", "-t", topic)


def main() -> int:
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker-bin", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    broker_port, proxy_port = free_port(), free_port()
    data = Path(tempfile.mkdtemp(prefix="runnel-capture-"))
    log = open(out / "broker.log", "wb")
    broker = subprocess.Popen(
        [args.broker_bin, "--listen", f"127.0.0.1:{broker_port}",
         "--advertised-listener", f"127.0.0.1:{proxy_port}", "--data-dir", str(data),
         "--group-initial-rebalance-delay-ms", "0"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    recorder = Recorder(out)
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", broker_port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline or broker.poll() is not None:
                    raise RuntimeError("runnel-broker did not start; see broker.log")
                time.sleep(0.05)
        Proxy(recorder, proxy_port, broker_port).start()
        bootstrap = f"127.0.0.1:{proxy_port}"
        steps = [("kafka-python", lambda v=v: kafka_python(bootstrap, v))
                 for v in (None, (2, 6), (2, 1), (1, 1), (0, 11))]
        steps += [("confluent-kafka", lambda: confluent(bootstrap))]
        steps += [("kafkajs", lambda: kafkajs(bootstrap)), ("kcat", lambda: kcat(bootstrap))]
        for label, step in steps:
            recorder.label = label
            print(f"capture: {label}", file=sys.stderr)
            step()
            time.sleep(0.3)  # let the client's last frames through before relabelling
        summary = {}
        for d in sorted(p for p in out.iterdir() if p.is_dir()):
            summary[d.name] = len(list(d.glob("*.bin")))
        print(json.dumps(summary))
    finally:
        broker.terminate()
        try:
            broker.wait(20)
        except subprocess.TimeoutExpired:
            broker.kill()
        log.close()
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
