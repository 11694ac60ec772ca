"""kafkajs 2.2.4 (speaks only non-flexible protocol versions) against runnel-broker,
driven through tests/compat/js/kafkajs_check.js.

Reading back does not use kafkajs's group consumer (it needs FindCoordinator/JoinGroup):
the script fetches with kafkajs's own Fetch request and RecordBatch decoder through its
cluster layer, and checks produce-response offsets and admin.fetchTopicOffsets. The group
consumer path runs only in the `groups`-marked test."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "kafkajs_check.js"


def run_kafkajs(**opts) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed", pytrace=False)
    if not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.fail("kafkajs is not installed: run scripts/test-deps.sh", pytrace=False)
    proc = subprocess.run([node, str(SCRIPT), json.dumps(opts)], capture_output=True, text=True,
                          timeout=120, cwd=JS_DIR)
    assert proc.returncode == 0, f"node exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON output; stderr:\n{proc.stderr[-4000:]}"
    result = json.loads(lines[-1])
    assert "error" not in result, (f"kafkajs failed after steps {result.get('stepsDone')}: "
                                   f"{result['error']}\nstderr:\n{proc.stderr[-4000:]}")
    return result


def check_round_trip(result: dict, topic: str, count: int):
    assert result["created"] is True
    assert result["createdAgain"] is False  # TOPIC_ALREADY_EXISTS
    assert result["listed"] is True
    assert result["metadataPartitions"] == [0, 1]

    # produce responses: one batch of 10 per send, base offsets 0, 10, 20, ...
    sends = result["sends"]
    assert [[(s["partition"], s["errorCode"]) for s in send] for send in sends] == [[(0, 0)]] * len(sends)
    assert [int(send[0]["baseOffset"]) for send in sends] == list(range(0, count, 10))
    assert [(p["partition"], p["errorCode"], int(p["baseOffset"])) for p in result["partition1"]] == [(1, 0, 0)]

    fetched = result["fetched"]
    assert [int(m["offset"]) for m in fetched] == list(range(count))
    assert [(m["key"], m["value"]) for m in fetched] == [(f"k{i}", f"kafkajs value {i}") for i in range(count)]
    assert [m["headers"] for m in fetched] == [{"seq": str(i), "lib": "kafkajs"} for i in range(count)]
    assert int(result["fetchHighWatermark"]) == count

    assert "offsetsError" not in result, f"admin.fetchTopicOffsets (ListOffsets) failed: {result['offsetsError']}"
    assert result["offsets"] == [
        {"partition": 0, "low": "0", "high": str(count)},
        {"partition": 1, "low": "0", "high": "1"},
    ]


@pytest.mark.parametrize("mode", ["plain", "gzip", "idempotent"])
def test_kafkajs_produce_offsets_and_fetch(broker, topic, mode):
    count = 50
    result = run_kafkajs(broker=broker.bootstrap, topic=topic, count=count,
                         gzip=(mode == "gzip"), idempotent=(mode == "idempotent"))
    check_round_trip(result, topic, count)


@pytest.mark.groups
def test_kafkajs_group_consumer(broker, topic):
    count = 20
    result = run_kafkajs(broker=broker.bootstrap, topic=topic, count=count, group=True, timeoutMs=60000)
    check_round_trip(result, topic, count)
    got = sorted((m["partition"], int(m["offset"]), m["key"], m["value"]) for m in result["groupConsumed"])
    assert got == [(0, i, f"k{i}", f"kafkajs value {i}") for i in range(count)] + [(1, 0, "p1", "to-partition-1")]
