//! Record values: a fixed header that carries the send time, then filler.
//!
//! | bytes   | field                                                   |
//! |---------|---------------------------------------------------------|
//! | 0..4    | magic `RNB1`                                            |
//! | 4..12   | run id: u64 big-endian (tells this run's records apart) |
//! | 12..20  | send time: µs since the run's clock anchor, u64 BE      |
//! | 20..    | filler: random `A`..=`Z`, the same for every record     |
//!
//! Producers and consumers run in one process and share the anchor (a monotonic
//! `Instant`), so end-to-end latency needs no synchronised wall clocks. The filler is
//! what Kafka's `kafka-producer-perf-test` sends: one random uppercase payload reused.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

/// The value header's magic bytes.
pub const MAGIC: [u8; 4] = *b"RNB1";

/// Bytes of the value header; the smallest `--record-size`.
pub const HEADER_LEN: usize = 20;

/// The run's monotonic clock: microseconds since one anchor shared by all tasks.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    anchor: Instant,
}

impl RunClock {
    /// A clock anchored now.
    pub fn start() -> Self {
        RunClock {
            anchor: Instant::now(),
        }
    }

    /// Microseconds from the anchor to `at` (0 for an instant before it).
    pub fn micros_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.anchor).as_micros()).unwrap_or(u64::MAX)
    }

    /// Microseconds from the anchor to now.
    pub fn now_micros(&self) -> u64 {
        self.micros_at(Instant::now())
    }
}

/// Builds record values of one size for one run.
#[derive(Debug, Clone)]
pub struct PayloadTemplate {
    run_id: u64,
    filler: Bytes,
}

impl PayloadTemplate {
    /// A template for values of `record_size` bytes (at least [`HEADER_LEN`]), with
    /// filler drawn from `seed`.
    pub fn new(run_id: u64, record_size: usize, seed: u64) -> Self {
        let len = record_size.saturating_sub(HEADER_LEN);
        let mut rng = XorShift::new(seed);
        let filler: Vec<u8> = (0..len).map(|_| b'A' + rng.below(26)).collect();
        PayloadTemplate {
            run_id,
            filler: Bytes::from(filler),
        }
    }

    /// One value stamped with `sent_micros`.
    pub fn value(&self, sent_micros: u64) -> Bytes {
        let mut value = BytesMut::with_capacity(HEADER_LEN + self.filler.len());
        value.put_slice(&MAGIC);
        value.put_u64(self.run_id);
        value.put_u64(sent_micros);
        value.put_slice(&self.filler);
        value.freeze()
    }
}

/// The send time in a value written by run `run_id`, or `None` for another writer's value.
pub fn sent_micros(value: &[u8], run_id: u64) -> Option<u64> {
    let header = value.get(..HEADER_LEN)?;
    if header[..4] != MAGIC {
        return None;
    }
    let id = u64::from_be_bytes(header[4..12].try_into().ok()?);
    let sent = u64::from_be_bytes(header[12..20].try_into().ok()?);
    (id == run_id).then_some(sent)
}

/// A small xorshift64* generator: filler and run ids need no cryptographic quality.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Seeded from the clock and the process id.
    pub fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
        XorShift::new(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` ≥ 1; slightly biased, fine for filler).
    pub fn below(&mut self, n: u8) -> u8 {
        (self.next_u64() % u64::from(n.max(1))) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips_its_send_time() {
        let template = PayloadTemplate::new(42, 1024, 7);
        let value = template.value(123_456);
        assert_eq!(value.len(), 1024);
        assert_eq!(sent_micros(&value, 42), Some(123_456));
        assert!(value[HEADER_LEN..].iter().all(u8::is_ascii_uppercase));
    }

    #[test]
    fn other_runs_and_foreign_values_are_not_ours() {
        let value = PayloadTemplate::new(42, HEADER_LEN, 7).value(5);
        assert_eq!(value.len(), HEADER_LEN);
        assert_eq!(sent_micros(&value, 43), None);
        assert_eq!(sent_micros(b"hello", 42), None);
        assert_eq!(sent_micros(&[0u8; 64], 42), None);
    }

    #[test]
    fn clock_is_monotonic_from_its_anchor() {
        let clock = RunClock::start();
        let a = clock.now_micros();
        let b = clock.now_micros();
        assert!(b >= a);
        assert_eq!(clock.micros_at(clock.anchor), 0);
    }
}
