"""Admin steps of bench/reassignment.sh, through kafka-python's KafkaAdminClient (the
repository's venv, `make test-deps`): create the partition to move, set or clear the
replication throttles, and move the partition with AlterPartitionReassignments, timing
it until ListPartitionReassignments shows nothing in flight and the target holds it.

Every command prints one JSON object on stdout.

  create  --bootstrap B --topic T                 -> {"replicas": [...]}
  throttle --bootstrap B --rate BYTES_PER_SEC|none -> {"brokers": [...]}
  move    --bootstrap B --topic T --to N [--timeout S]
          -> {"seconds": ..., "bytes": ..., "bytes_per_sec": ...}
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

RATES = ("leader.replication.throttled.rate", "follower.replication.throttled.rate")


def admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60_000,
                            client_id="runnel-bench-reassignment")


def replicas(a: KafkaAdminClient, topic: str) -> list[int] | None:
    [t] = a.describe_topics([topic])
    if t["error_code"] != 0 or not t["partitions"]:
        return None
    [p] = [p for p in t["partitions"] if p["partition_index"] == 0]
    return sorted(p["replica_nodes"])


def create(args) -> dict:
    a = admin(args.bootstrap)
    try:
        a.create_topics([NewTopic(name=args.topic, num_partitions=1, replication_factor=1)])
        deadline = time.monotonic() + 60
        while (r := replicas(a, args.topic)) is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"{args.topic} has no replica after 60 s")
            time.sleep(0.2)
        return {"replicas": r}
    finally:
        a.close()


def throttle(args) -> dict:
    a = admin(args.bootstrap)
    try:
        brokers = sorted(b["broker_id"] for b in a.describe_cluster()["brokers"])
        for b in brokers:
            resource = ConfigResource(ConfigResourceType.BROKER, str(b),
                                      configs={name: args.rate for name in RATES})
            if args.rate == "none":
                resource.configs = list(RATES)
                result = a.reset_configs([resource])
            else:
                result = a.alter_configs([resource])
            if result["broker"][str(b)] != "OK":
                raise SystemExit(f"setting the throttle on broker {b}: {result}")
        return {"brokers": brokers, "rate": args.rate}
    finally:
        a.close()


def partition_size(a: KafkaAdminClient, topic: str, broker: int) -> int:
    [answer] = a.describe_log_dirs({topic: [0]}, brokers=[broker])
    return sum(p["partition_size"] for d in answer["log_dirs"] for t in d["topics"]
               if t["name"] == topic for p in t["partitions"])


def move(args) -> dict:
    a = admin(args.bootstrap)
    tp = TopicPartition(args.topic, 0)
    try:
        started = time.monotonic()
        result = a.alter_partition_reassignments({tp: [args.to]})
        if result.get(tp) is not None:
            raise SystemExit(f"the reassignment was refused: {result}")
        deadline = started + args.timeout
        while True:
            in_flight = a.list_partition_reassignments([tp])
            if not in_flight and replicas(a, args.topic) == [args.to]:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the move to {args.to} did not finish in {args.timeout} s")
            time.sleep(0.1)
        seconds = time.monotonic() - started
        size = partition_size(a, args.topic, args.to)
        return {"seconds": round(seconds, 3), "bytes": size,
                "bytes_per_sec": round(size / seconds, 1)}
    finally:
        a.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("create", "throttle", "move"):
        p = sub.add_parser(name)
        p.add_argument("--bootstrap", required=True)
        if name != "throttle":
            p.add_argument("--topic", required=True)
    sub.choices["throttle"].add_argument("--rate", required=True)
    sub.choices["move"].add_argument("--to", type=int, required=True)
    sub.choices["move"].add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    out = {"create": create, "throttle": throttle, "move": move}[args.command](args)
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
