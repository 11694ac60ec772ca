"""The e2e suite's Kafka client (kafka-python, the seeds' library), run as a Job in kind.

    client.py produce       --topic T --count N --run-id R    prints "ACK {json}" per acked record
    client.py consume       --topic T --group G --max M       consumes M records, commits exactly them
    client.py check-topic   --topic T --partitions P --config k=v ...
    client.py verify        --acked FILE                      every acked record is still there

Bootstrap address from $BOOTSTRAP_SERVERS. Exit status 0 only when the step's check holds;
every failure says what was expected and what was found.
"""

import argparse
import json
import os
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.structs import OffsetAndMetadata

BOOTSTRAP = os.environ.get("BOOTSTRAP_SERVERS", "localhost:9092")
TIMEOUT_S = float(os.environ.get("CLIENT_TIMEOUT_S", "120"))


def fail(message):
    print(f"FAIL {message}", flush=True)
    sys.exit(1)


def offset_and_metadata(offset):
    # kafka-python >= 2.1 has a leader_epoch field; 2.0 does not.
    try:
        return OffsetAndMetadata(offset, "", -1)
    except TypeError:
        return OffsetAndMetadata(offset, "")


def produce(args):
    producer = KafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        acks="all",
        retries=10,
        client_id="e2e-producer",
        request_timeout_ms=30000,
    )
    futures = []
    for i in range(args.count):
        value = f"{args.run_id}-{i}"
        futures.append((value, producer.send(args.topic, key=f"k{i}".encode(), value=value.encode())))
    producer.flush(timeout=TIMEOUT_S)
    acked, failed = 0, []
    for value, future in futures:
        try:
            meta = future.get(timeout=TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - every failure is reported
            failed.append(f"{value}: {error!r}")
            continue
        acked += 1
        print("ACK " + json.dumps({"t": meta.topic, "p": meta.partition, "o": meta.offset, "v": value}), flush=True)
    producer.close(timeout=10)
    if failed:
        fail(f"{len(failed)} of {args.count} records not acknowledged: {failed[:5]}")
    print(f"PRODUCED {acked}", flush=True)


def consume(args):
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=args.group,
        client_id="e2e-consumer",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=max(1, min(args.max, 500)),
    )
    # poll() returns at most `max_records` and advances a partition's position only past
    # the records it returned, so after consuming exactly --max records every assigned
    # partition's position is what this consumer has really consumed.
    deadline = time.monotonic() + TIMEOUT_S
    seen = 0
    while seen < args.max or not consumer.assignment():
        if time.monotonic() > deadline:
            fail(f"consumed {seen} of {args.max} records of {args.topic} in {TIMEOUT_S}s "
                 f"(assigned: {sorted(consumer.assignment())})")
        batches = consumer.poll(timeout_ms=1000, max_records=max(1, args.max - seen))
        seen += sum(len(records) for records in batches.values())
    if seen != args.max:
        fail(f"consumed {seen} records, more than the {args.max} asked for")
    # Commit a position for every assigned partition, so the group's lag covers them all.
    position = {tp: consumer.position(tp) for tp in consumer.assignment()}
    consumer.commit({tp: offset_and_metadata(offset) for tp, offset in position.items()})
    consumer.close()
    print(f"CONSUMED {seen} COMMITTED " + json.dumps({f"{tp.topic}-{tp.partition}": o for tp, o in sorted(position.items())}), flush=True)


def check_topic(args):
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="e2e-admin")
    want = dict(item.split("=", 1) for item in args.config)
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        topics = admin.describe_topics([args.topic])
        partitions = len(topics[0].get("partitions", [])) if topics else 0
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, args.topic)])
        entries = described.get("topic", {}).get(args.topic, {})
        have = {key: (entry.get("value") if isinstance(entry, dict) else entry) for key, entry in entries.items()}
        wrong = {k: have.get(k) for k, v in want.items() if have.get(k) != v}
        if partitions == args.partitions and not wrong:
            break
        if time.monotonic() > deadline:
            admin.close()
            fail(f"topic {args.topic} on the broker: {partitions} partitions (want {args.partitions}), configs {wrong} (want {want})")
        time.sleep(2)
    admin.close()
    print(f"TOPIC {args.topic} partitions={partitions} config=" + json.dumps({k: have[k] for k in want}), flush=True)


def verify(args):
    with open(args.acked) as f:
        acked = [json.loads(line.split(" ", 1)[1]) for line in f if line.startswith("ACK ")]
    if not acked:
        fail(f"{args.acked} lists no acknowledged records")
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, client_id="e2e-verifier", enable_auto_commit=False)
    partitions = sorted({(a["t"], a["p"]) for a in acked})
    tps = [TopicPartition(t, p) for t, p in partitions]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    found = {}
    deadline = time.monotonic() + TIMEOUT_S
    while any(consumer.position(tp) < end[tp] for tp in tps):
        if time.monotonic() > deadline:
            fail(f"could not read up to the end offsets {end} in {TIMEOUT_S}s")
        for tp, records in consumer.poll(timeout_ms=1000).items():
            for record in records:
                found[(tp.topic, tp.partition, record.offset)] = record.value.decode()
    consumer.close()
    missing = [a for a in acked if found.get((a["t"], a["p"], a["o"])) != a["v"]]
    if missing:
        fail(f"{len(missing)} of {len(acked)} acknowledged records lost or changed, e.g. {missing[:5]}")
    print(f"VERIFIED {len(acked)} acknowledged records at their offsets", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--run-id", required=True)
    p.set_defaults(run=produce)
    c = sub.add_parser("consume")
    c.add_argument("--topic", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--max", type=int, required=True)
    c.set_defaults(run=consume)
    t = sub.add_parser("check-topic")
    t.add_argument("--topic", required=True)
    t.add_argument("--partitions", type=int, required=True)
    t.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    t.set_defaults(run=check_topic)
    v = sub.add_parser("verify")
    v.add_argument("--acked", required=True)
    v.set_defaults(run=verify)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
