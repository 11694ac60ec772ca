#!/usr/bin/env python3
"""Measures consumer-group rebalance times against a local runnel-broker.

Starts its own broker (like tests/compat/conftest.py: 127.0.0.1, a free port, a temporary
data dir), creates a 12-partition topic and, for each repetition, a fresh group of
confluent-kafka consumers, each in its own process (so one can be SIGKILLed):

  join   3 members own the 12 partitions; a 4th starts: time until all 4 own partitions
         (every partition owned exactly once);
  kill   one of the 4 is SIGKILLed (no LeaveGroup): time until the 3 others own all 12
         (bounded below by session.timeout.ms);
  close  one of the 3 closes cleanly (LeaveGroup): time until the 2 others own all 12.

"Own" is what each member's on_assign/on_revoke callbacks say, reported over its stdout.
Prints each repetition and the medians.

Usage:  .venv/bin/python scripts/rebalance-timing.py [--reps 5] [--strategy range]
        [--session-timeout-ms 6000] [--heartbeat-interval-ms 1000] [--broker-arg=--flag=value ...]
Needs the broker binary (cargo build -p runnel-broker; or RUNNEL_BROKER_BIN) and the
confluent-kafka package of the test venv (scripts/test-deps.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 12

CHILD = r"""
import json, sys, threading
from confluent_kafka import Consumer
conf = json.loads(sys.argv[1]); topic = sys.argv[2]
owned = set()
def report():
    print("OWNED " + json.dumps(sorted(owned)), flush=True)
def on_assign(c, ps):
    owned.update(p.partition for p in ps); report()
def on_revoke(c, ps):
    owned.difference_update(p.partition for p in ps); report()
closing = threading.Event()
def read_stdin():
    for line in sys.stdin:
        if line.strip() == "close":
            closing.set()
            return
threading.Thread(target=read_stdin, daemon=True).start()
c = Consumer(conf)
c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
while not closing.is_set():
    c.poll(0.05)
c.close()
print("CLOSED", flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, binary: Path, extra: list[str]):
        self.dir = Path(tempfile.mkdtemp(prefix="rebalance-timing-"))
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = open(self.dir / "broker.log", "wb")
        args = [str(binary), "--listen", self.bootstrap, "--advertised-listener", self.bootstrap,
                "--data-dir", str(self.dir / "data"), *extra]
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"), NO_COLOR="1")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"broker exited with {self.proc.returncode}; log in {self.dir}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("broker did not start listening within 20 s")
                time.sleep(0.05)

    def stop(self, keep: bool):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if keep:
            print(f"broker log: {self.dir / 'broker.log'}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Member:
    def __init__(self, conf: dict, topic: str, name: str):
        self.name = name
        self.owned: frozenset[int] = frozenset()
        self.closed = threading.Event()
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(conf), topic],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("OWNED "):
                self.owned = frozenset(json.loads(line[6:]))
            elif line.startswith("CLOSED"):
                self.closed.set()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self):
        self.proc.stdin.write("close\n")
        self.proc.stdin.flush()

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def wait_split(members: list[Member], n_owning: int, timeout: float) -> float:
    """Seconds until every partition is owned by exactly one of `members` and n_owning of
    them own some."""
    start = time.monotonic()
    while True:
        owned = [p for m in members for p in m.owned]
        if (sorted(owned) == list(range(PARTITIONS))
                and sum(1 for m in members if m.owned) == n_owning):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"no split over {n_owning} members within {timeout}s: "
                               + ", ".join(f"{m.name}={sorted(m.owned)}" for m in members))
        time.sleep(0.005)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--strategy", default="range",
                    help="partition.assignment.strategy (range, roundrobin, cooperative-sticky)")
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--heartbeat-interval-ms", type=int, default=1000)
    ap.add_argument("--broker-arg", action="append", default=[],
                    help="extra runnel-broker argument, e.g. --broker-arg=--group-initial-rebalance-delay-ms=0")
    ap.add_argument("--keep-log", action="store_true")
    args = ap.parse_args()

    binary = Path(os.environ.get("RUNNEL_BROKER_BIN", REPO / "target" / "debug" / "runnel-broker"))
    if not binary.is_file():
        raise SystemExit(f"{binary} not found: cargo build -p runnel-broker")
    broker = Broker(binary, args.broker_arg)
    results = {"join": [], "kill": [], "close": []}
    members: list[Member] = []
    try:
        topic = f"rebalance-timing-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic] \
            .result(timeout=30)
        print(f"broker {broker.bootstrap} {' '.join(args.broker_arg)}; topic {topic} ({PARTITIONS} partitions); "
              f"strategy={args.strategy} session.timeout.ms={args.session_timeout_ms} "
              f"heartbeat.interval.ms={args.heartbeat_interval_ms}")
        for rep in range(1, args.reps + 1):
            conf = {"bootstrap.servers": broker.bootstrap, "group.id": f"timing-{rep}-{uuid.uuid4().hex[:6]}",
                    "session.timeout.ms": args.session_timeout_ms,
                    "heartbeat.interval.ms": args.heartbeat_interval_ms,
                    "partition.assignment.strategy": args.strategy,
                    "auto.offset.reset": "earliest", "enable.auto.commit": False}
            members = [Member(conf, topic, f"m{i}") for i in range(3)]
            setup = wait_split(members, 3, timeout=60)
            time.sleep(1.0)  # settle

            fourth = Member(conf, topic, "m3")
            members.append(fourth)
            t_join = wait_split(members, 4, timeout=60)
            time.sleep(1.0)

            victim = members[0]
            victim.kill()
            alive = members[1:]
            t_kill = wait_split(alive, 3, timeout=60)
            time.sleep(1.0)

            leaving = alive[0]
            leaving.close()
            rest = alive[1:]
            t_close = wait_split(rest, 2, timeout=60)
            if not leaving.closed.wait(timeout=20):
                print("  (the closing member did not finish close() within 20 s)")

            results["join"].append(t_join)
            results["kill"].append(t_kill)
            results["close"].append(t_close)
            print(f"rep {rep}: first 3-member split {setup:.2f}s | 4th joins -> 4 owners {t_join:.3f}s | "
                  f"SIGKILL -> 3 own all {t_kill:.3f}s | clean close -> 2 own all {t_close:.3f}s", flush=True)
            for m in members:
                m.cleanup()
            members = []
        print("medians over {} reps: join {:.3f}s, SIGKILL {:.3f}s, clean close {:.3f}s".format(
            args.reps, *(statistics.median(results[k]) for k in ("join", "kill", "close"))))
    finally:
        for m in members:
            m.cleanup()
        broker.stop(keep=args.keep_log)


if __name__ == "__main__":
    main()
