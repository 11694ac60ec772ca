//! The follower's append path: batches fetched from the partition leader, stored
//! exactly as the leader wrote them (Kafka's `UnifiedLog.appendAsFollower`).
//!
//! | step                     | leader path ([`Log::append`])          | follower path                              |
//! |--------------------------|----------------------------------------|--------------------------------------------|
//! | framing, CRC, header     | `split_batches`                        | the same, but no `max.message.bytes` and `lastOffsetDelta ≥ recordCount - 1` (`Origin::Replication`) |
//! | records                  | `validate`: keys, re-compression       | not read                                   |
//! | offsets                  | assigned from the log end offset       | checked: contiguous from the log end offset |
//! | leader epoch, timestamps | stamped                                | kept                                       |
//! | producer state           | checked: duplicates, epochs, sequences | recorded, never refused                    |
//! | leader-epoch cache       | an entry per newer epoch               | the same                                   |
//! | rolling, indexes, flush  | `maybe_roll`, segment append           | the same                                   |

use crate::append::{split_batches, Origin};
use crate::error::{InvalidReason, LogError, Result};
use crate::index::RelativeOffset;
use crate::log::{wall_clock_ms, AppendInfo, Log};

impl Log {
    /// Appends record batches fetched from the partition leader, byte for byte: base
    /// offsets, partition leader epochs, timestamps, producer ids and sequences, codecs
    /// and CRCs are stored as received.
    ///
    /// Every batch passes the leader path's framing and header checks (length, magic,
    /// CRC-32C, codec, record count; not `max.message.bytes`, which the leader
    /// applied, and a `lastOffsetDelta` past `recordCount - 1` is accepted, as the
    /// cleaner leaves it). Offsets must continue the log: the first batch's base
    /// offset is the log end offset and each later one follows the previous batch's
    /// last offset, else `NonContiguousAppend` (in a compacted topic, a base offset past
    /// the expected one is accepted: the leader's cleaner removed whole batches). Every
    /// check runs before anything is written; a failure writes nothing.
    ///
    /// Producer state is updated from the batches without checks (a follower records
    /// what the leader accepted), so that after a failover this log recognises a
    /// retried batch as a duplicate. A batch whose epoch is newer than
    /// [`Log::latest_epoch`] starts a leader-epoch cache entry. Segments roll, indexes
    /// grow and flushing works as on the leader path; the wall clock stands in for the
    /// leader path's `now_ms` where rolling needs one. Does not fsync. On an I/O error
    /// a prefix of the payload may have been appended; the log stays consistent.
    pub fn append_as_follower(&mut self, records: &[u8]) -> Result<AppendInfo> {
        self.guarded(|log| log.append_as_follower_now(records))
    }

    fn append_as_follower_now(&mut self, records: &[u8]) -> Result<AppendInfo> {
        let batches = split_batches(records, &self.config, Origin::Replication)?;
        let gaps_allowed = self.config.cleanup_policy.compacts();
        let mut expected = self.log_end_offset();
        for (_, header) in &batches {
            let got = header.base_offset;
            let follows = if gaps_allowed {
                got >= expected
            } else {
                got == expected
            };
            if !follows {
                return Err(LogError::NonContiguousAppend { expected, got });
            }
            // A segment rolled at `expected` must be able to index the whole batch.
            let last = header.last_offset();
            if RelativeOffset::new(expected, last).is_none() {
                return Err(LogError::invalid(InvalidReason::OffsetOverflow));
            }
            expected = last
                .checked_add(1)
                .ok_or(LogError::invalid(InvalidReason::OffsetOverflow))?;
        }
        let first_offset = batches
            .first()
            .map_or(self.log_end_offset(), |(_, h)| h.base_offset);
        let now_ms = wall_clock_ms();
        let interval = self.config.index_interval_bytes;
        for (range, header) in batches {
            // split_batches returned ranges inside `records`.
            let bytes = records
                .get(range)
                .ok_or(LogError::invalid(InvalidReason::NoBatches))?;
            self.maybe_assign_epoch(header.partition_leader_epoch, header.base_offset)?;
            self.maybe_roll(&header, now_ms)?;
            self.segments
                .active_mut()
                .append(bytes, &header, interval)?;
            self.producers.replay(&header);
        }
        Ok(AppendInfo {
            base_offset: first_offset,
            last_offset: self.log_end_offset() - 1,
            log_append_time: -1,
            log_start_offset: self.log_start_offset(),
            duplicate: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchHeader;
    use crate::config::{CleanupPolicy, LogConfig};
    use crate::error::CorruptReason;
    use crate::testutil::{batch, BatchSpec};

    fn at(base_offset: i64, record_count: i32, leader_epoch: i32) -> Vec<u8> {
        batch(&BatchSpec {
            base_offset,
            record_count,
            leader_epoch,
            ..BatchSpec::default()
        })
    }

    fn all_bytes(log: &Log) -> Vec<u8> {
        log.read(log.log_start_offset(), usize::MAX, true)
            .unwrap()
            .bytes
            .to_vec()
    }

    #[test]
    fn stores_the_leaders_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let payload = [at(0, 2, 3), at(2, 1, 3), at(3, 4, 4)].concat();
        let info = log.append_as_follower(&payload).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 6));
        assert!(!info.duplicate);
        assert_eq!(log.log_end_offset(), 7);
        assert_eq!(all_bytes(&log), payload);
        assert_eq!(log.leader_epochs(), [(3, 0), (4, 3)]);
    }

    #[test]
    fn non_contiguous_payloads_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append_as_follower(&at(0, 2, 0)).unwrap();
        let size = log.size_bytes();
        for (payload, expected, got) in [
            (at(3, 1, 0), 2, 3),                         // a gap at the log end
            (at(1, 1, 0), 2, 1),                         // overlapping the log
            ([at(2, 1, 0), at(4, 1, 0)].concat(), 3, 4), // a gap inside the payload
            ([at(2, 2, 0), at(3, 1, 0)].concat(), 4, 3), // an overlap inside it
        ] {
            match log.append_as_follower(&payload) {
                Err(LogError::NonContiguousAppend {
                    expected: e,
                    got: g,
                }) => {
                    assert_eq!((e, g), (expected, got));
                }
                other => panic!("expected NonContiguousAppend, got {other:?}"),
            }
        }
        assert_eq!((log.log_end_offset(), log.size_bytes()), (2, size));
        // A bad CRC in a later batch also rejects the payload as a whole.
        let mut damaged = at(3, 1, 0);
        damaged[70] ^= 1;
        assert!(matches!(
            log.append_as_follower(&[at(2, 1, 0), damaged].concat()),
            Err(LogError::CorruptRecord {
                reason: CorruptReason::CrcMismatch { .. }
            })
        ));
        assert!(matches!(
            log.append_as_follower(&[]),
            Err(LogError::InvalidRecord {
                reason: InvalidReason::NoBatches
            })
        ));
        assert_eq!((log.log_end_offset(), log.size_bytes()), (2, size));
    }

    #[test]
    fn compacted_topics_accept_the_cleaners_gaps_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config).unwrap();
        // Records 0..=3 where the cleaner kept only the last: record count 1, delta 3.
        let mut cleaned = at(0, 4, 1);
        cleaned[57..61].copy_from_slice(&1i32.to_be_bytes());
        let crc = crate::batch::compute_crc(&cleaned);
        cleaned[17..21].copy_from_slice(&crc.to_be_bytes());
        // Then a batch after a gap: offsets 4..=9 were removed with their batches.
        let payload = [cleaned, at(10, 1, 1)].concat();
        // The filler records have no key: the leader path's record checks refuse them,
        // the follower's do not read them.
        assert!(matches!(
            log.append(&at(0, 1, 1), 1, 0),
            Err(LogError::InvalidRecord {
                reason: InvalidReason::MalformedRecords
            })
        ));
        log.append_as_follower(&payload).unwrap();
        assert_eq!(log.log_end_offset(), 11);
        assert_eq!(all_bytes(&log), payload);
        assert!(matches!(
            log.append_as_follower(&at(10, 1, 1)),
            Err(LogError::NonContiguousAppend {
                expected: 11,
                got: 10
            })
        ));
    }

    #[test]
    fn ignores_max_message_bytes_but_not_segment_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            max_message_bytes: 100,
            segment_bytes: 300,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config).unwrap();
        let big = batch(&BatchSpec {
            payload_len: 150,
            ..BatchSpec::default()
        });
        assert!(matches!(
            log.append(&big, 0, 0),
            Err(LogError::RecordTooLarge { .. })
        ));
        log.append_as_follower(&big).unwrap();
        let huge = batch(&BatchSpec {
            base_offset: 1,
            payload_len: 250,
            ..BatchSpec::default()
        });
        assert!(matches!(
            log.append_as_follower(&huge),
            Err(LogError::BatchLargerThanSegment { .. })
        ));
        assert_eq!(log.log_end_offset(), 1);
    }

    #[test]
    fn offsets_that_cannot_be_indexed_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config).unwrap();
        for base in [i64::from(i32::MAX) + 1, i64::MAX] {
            assert!(matches!(
                log.append_as_follower(&at(base, 1, 0)),
                Err(LogError::InvalidRecord {
                    reason: InvalidReason::OffsetOverflow
                })
            ));
        }
        assert_eq!(log.log_end_offset(), 0);
    }

    #[test]
    fn replays_producer_state_without_checking_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let idem = |base_offset, producer_epoch, base_sequence| {
            batch(&BatchSpec {
                base_offset,
                producer_id: 7,
                producer_epoch,
                base_sequence,
                record_count: 2,
                ..BatchSpec::default()
            })
        };
        // Sequences a leader path would refuse here (a gap, then a new epoch not at 0):
        // the leader accepted them, so the follower records them.
        log.append_as_follower(&idem(0, 1, 0)).unwrap();
        log.append_as_follower(&idem(2, 1, 10)).unwrap();
        log.append_as_follower(&idem(4, 2, 4)).unwrap();
        let header = BatchHeader::parse(&idem(0, 2, 4)).unwrap();
        let entry = log.producers.get(7).unwrap();
        assert!(matches!(
            crate::producer_state::ProducerStateManager::check(Some(entry), &header, 6).unwrap(),
            crate::producer_state::Verdict::Duplicate(m) if (m.base_offset, m.last_offset) == (4, 5)
        ));
    }
}
