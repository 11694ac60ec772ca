"""kcat 1.7 (Debian's librdkafka 2.0.2, an older client) against runnel-broker."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from compat_helpers import create_topic

KCAT = shutil.which("kcat")


def kcat(*args: str, stdin: str | None = None, timeout: float = 60) -> str:
    if KCAT is None:
        pytest.fail("kcat is not installed: run scripts/test-deps.sh", pytrace=False)
    proc = subprocess.run([KCAT, *args], input=stdin, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def test_metadata_listing(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    md = json.loads(kcat("-L", "-b", broker.bootstrap, "-J", "-m", "15"))
    assert [b["name"] for b in md["brokers"]] == [broker.bootstrap]
    [b] = md["brokers"]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics
    t = topics[topic]
    assert "error" not in t, t
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
    for p in t["partitions"]:
        assert p["leader"] == b["id"]
        assert [r["id"] for r in p["replicas"]] == [b["id"]]
        assert [r["id"] for r in p["isrs"]] == [b["id"]]


def test_metadata_for_one_topic(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    md = json.loads(kcat("-L", "-b", broker.bootstrap, "-t", topic, "-J", "-m", "15"))
    assert [t["topic"] for t in md["topics"]] == [topic]
    assert len(md["topics"][0]["partitions"]) == 2


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_with_keys_then_consume_from_beginning(broker, topic, codec):
    create_topic(broker.bootstrap, topic, partitions=1)
    lines = [f"key-{i}:value {i} with spaces and üñíçødé" for i in range(50)]
    kcat("-P", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-K:", "-X", f"compression.codec={codec}",
         "-H", "origin=kcat", stdin="\n".join(lines) + "\n")

    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-e", "-o", "beginning",
               "-J", "-m", "15")
    msgs = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [m["offset"] for m in msgs] == list(range(50))
    assert [(m["key"], m["payload"]) for m in msgs] == [tuple(line.split(":", 1)) for line in lines]
    assert all(m["partition"] == 0 for m in msgs)
    assert all(m.get("headers") == ["origin", "kcat"] for m in msgs), msgs[0]


def test_produce_auto_created_topic_and_consume_with_format(broker, unique_name):
    name = unique_name("kcat-auto")
    kcat("-P", "-b", broker.bootstrap, "-t", name, "-K:", stdin="a:1\nb:2\nc:3\n")
    out = kcat("-C", "-b", broker.bootstrap, "-t", name, "-e", "-o", "beginning",
               "-f", "%p|%o|%k|%s\n", "-m", "15")
    rows = sorted(tuple(line.split("|")) for line in out.splitlines() if line)
    assert sorted((k, v) for _, _, k, v in rows) == [("a", "1"), ("b", "2"), ("c", "3")]
    # offsets within each partition are 0..n-1
    by_partition: dict[str, list[int]] = {}
    for p, o, _, _ in rows:
        by_partition.setdefault(p, []).append(int(o))
    assert all(sorted(v) == list(range(len(v))) for v in by_partition.values()), by_partition


def test_consume_from_offset_and_count(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    kcat("-P", "-b", broker.bootstrap, "-t", topic, "-p", "0",
         stdin="".join(f"m{i}\n" for i in range(10)))
    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-o", "4", "-c", "3",
               "-f", "%o=%s\n")
    assert out.splitlines() == ["4=m4", "5=m5", "6=m6"]
    # negative offsets are relative to the end
    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-o", "-2", "-e", "-f", "%o=%s\n")
    assert out.splitlines() == ["8=m8", "9=m9"]
