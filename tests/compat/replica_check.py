"""Reads a partition's record batches from a broker's data directory and compares replicas.

For the replication tests: once brokers hold copies of a partition, every replica must
hold the leader's batches byte for byte below the high watermark. This reads the
segment files themselves (stop the brokers first, or at least let them flush), so a
test can say exactly where two replicas part.

On disk, `<data>/<topic>-<partition>/<base offset, 20 digits>.log` holds a sequence of
v2 record batches, big-endian (broker/storage/src/batch.rs):

    byte  field                 type   byte  field                 type
       0  baseOffset            i64      27  baseTimestamp         i64
       8  batchLength           i32      35  maxTimestamp          i64
      12  partitionLeaderEpoch  i32      43  producerId            i64
      16  magic (2)             i8       51  producerEpoch         i16
      17  crc (CRC-32C, 21..end) u32     53  baseSequence          i32
      21  attributes            i16      57  recordCount           i32
      23  lastOffsetDelta       i32      61  records...

A batch is 12 + batchLength bytes. The active segment may end in preallocated zeros: a
batchLength of 0 ends the scan. Anything else that is not a whole, valid batch (a
length shorter than a header or past the end of the file, a magic other than 2, a CRC
that does not match) raises `CorruptBatch` naming the file and position.

    batches = read_partition(data_dir, "orders", 0)
    compare_replicas([dir0, dir1, dir2], "orders", 0, below_offset=high_watermark)
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from kafka.record.util import calc_crc32c

HEADER_LEN = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes batchLength does not count
CRC_COVERS_FROM = 21
MAGIC_V2 = 2
# A larger batch is refused before it is read (the broker's own limit is far lower).
MAX_BATCH_BYTES = 64 * 1024 * 1024

_HEADER = struct.Struct(">qiibIhiqqqhii")
assert _HEADER.size == HEADER_LEN
_SEGMENT = re.compile(r"^(\d{20})\.log$")

# (first byte, field) in header order, to name the field a difference falls in.
FIELDS = [(0, "baseOffset"), (8, "batchLength"), (12, "partitionLeaderEpoch"), (16, "magic"),
          (17, "crc"), (21, "attributes"), (23, "lastOffsetDelta"), (27, "baseTimestamp"),
          (35, "maxTimestamp"), (43, "producerId"), (51, "producerEpoch"),
          (53, "baseSequence"), (57, "recordCount"), (61, "records")]


class CorruptBatch(AssertionError):
    """A segment holds bytes that are not a valid v2 record batch."""


class ReplicasDiffer(AssertionError):
    """Two replicas do not hold the same batches below the offset compared."""


@dataclass(frozen=True)
class Batch:
    """One record batch as stored, with where it was read from."""

    base_offset: int
    last_offset: int
    leader_epoch: int
    attributes: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int
    raw: bytes
    segment: Path
    position: int

    @property
    def compression(self) -> int:
        """0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd."""
        return self.attributes & 0x7

    def where(self) -> str:
        return f"{self.segment.name} at byte {self.position}"


def field_at(index: int) -> str:
    """The header field (or "records") that byte `index` of a batch belongs to."""
    return [name for start, name in FIELDS if start <= index][-1]


def read_segment(path: Path) -> list[Batch]:
    """The batches of one segment file, in file order, each with its CRC checked."""
    data = Path(path).read_bytes()
    batches = []
    position = 0
    while position + LOG_OVERHEAD <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, position)
        if length == 0:  # preallocated tail of the active segment
            break
        size = LOG_OVERHEAD + length
        if length < HEADER_LEN - LOG_OVERHEAD or size > MAX_BATCH_BYTES:
            raise CorruptBatch(f"{path} at byte {position}: batchLength {length} is not the "
                               f"length of a batch (at least {HEADER_LEN - LOG_OVERHEAD})")
        if position + size > len(data):
            raise CorruptBatch(f"{path} at byte {position}: the batch at offset {base_offset} "
                               f"needs {size} bytes, the file has {len(data) - position} left")
        raw = data[position:position + size]
        (_, _, epoch, magic, crc, attributes, last_delta, _, _, producer_id, producer_epoch,
         base_sequence, record_count) = _HEADER.unpack_from(raw)
        if magic != MAGIC_V2:
            raise CorruptBatch(f"{path} at byte {position}: magic {magic}, not {MAGIC_V2}")
        computed = calc_crc32c(memoryview(raw)[CRC_COVERS_FROM:])
        if computed != crc:
            raise CorruptBatch(f"{path} at byte {position}: the batch at offset {base_offset} "
                               f"has CRC {crc:#010x}, its bytes give {computed:#010x}")
        batches.append(Batch(base_offset, base_offset + last_delta, epoch, attributes,
                             producer_id, producer_epoch, base_sequence, record_count, raw,
                             Path(path), position))
        position += size
    if 0 < len(data) - position < LOG_OVERHEAD and any(data[position:]):
        raise CorruptBatch(f"{path} at byte {position}: {len(data) - position} trailing bytes")
    return batches


def segments(data_dir: Path, topic: str, partition: int) -> list[Path]:
    """The partition's segment files in offset order."""
    directory = Path(data_dir) / f"{topic}-{partition}"
    if not directory.is_dir():
        raise FileNotFoundError(f"no directory {directory}")
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _SEGMENT.match(p.name))]
    return [p for _, p in sorted(found)]


def read_partition(data_dir: Path, topic: str, partition: int) -> list[Batch]:
    """Every batch of the partition, in offset order; offsets must increase from batch to
    batch (gaps are allowed: compaction removes records)."""
    batches: list[Batch] = []
    for path in segments(data_dir, topic, partition):
        for batch in read_segment(path):
            if batches and batch.base_offset <= batches[-1].last_offset:
                raise CorruptBatch(f"{batch.where()}: offset {batch.base_offset} does not follow "
                                   f"{batches[-1].last_offset} ({batches[-1].where()})")
            batches.append(batch)
    return batches


def compare_replicas(dirs: list[Path], topic: str, partition: int, below_offset: int) -> int:
    """Asserts that every replica (a broker's data directory each) holds byte-identical
    batches for all offsets below `below_offset` (the high watermark); the first
    directory is the reference. Returns how many batches were compared. Raises
    `ReplicasDiffer` at the first difference, `CorruptBatch` for a batch none should hold."""
    assert len(dirs) >= 2, "compare at least two replicas"
    label = f"{topic}-{partition}"
    below = [[b for b in read_partition(d, topic, partition) if b.base_offset < below_offset]
             for d in dirs]
    reference = below[0]
    covered = reference[-1].last_offset + 1 if reference else None
    if reference and covered < below_offset:
        raise ReplicasDiffer(f"{label}: the reference replica {dirs[0]} ends at offset "
                             f"{covered - 1}, below {below_offset}")
    for d, batches in zip(dirs[1:], below[1:]):
        for k in range(max(len(reference), len(batches))):
            want = reference[k] if k < len(reference) else None
            got = batches[k] if k < len(batches) else None
            if want is None or got is None or want.base_offset != got.base_offset:
                raise ReplicasDiffer(_missing(label, dirs[0], want, d, got))
            if want.raw != got.raw:
                raise ReplicasDiffer(_differs(label, dirs[0], want, d, got))
    return len(reference)


def _describe(batch: Batch | None) -> str:
    if batch is None:
        return "no batch"
    return f"offsets {batch.base_offset}..{batch.last_offset} ({batch.where()})"


def _missing(label: str, ref_dir: Path, want: Batch | None, dir_: Path, got: Batch | None) -> str:
    return (f"{label}: the replicas part at offset "
            f"{min(b.base_offset for b in (want, got) if b is not None)}: "
            f"{ref_dir} has {_describe(want)}, {dir_} has {_describe(got)}")


def _differs(label: str, ref_dir: Path, want: Batch, dir_: Path, got: Batch) -> str:
    first = next((i for i, (a, b) in enumerate(zip(want.raw, got.raw)) if a != b),
                 min(len(want.raw), len(got.raw)))
    at = (f"byte {first} ({field_at(first)}): {want.raw[first:first + 1].hex() or 'end'} "
          f"vs {got.raw[first:first + 1].hex() or 'end'}")
    return (f"{label}: the batches at offset {want.base_offset} differ at {at}; "
            f"{ref_dir}: {_describe(want)}, {len(want.raw)} bytes; "
            f"{dir_}: {_describe(got)}, {len(got.raw)} bytes")
