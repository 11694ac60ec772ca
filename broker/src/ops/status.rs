//! The broker's lifecycle state, shared by the run loop (which moves it forward) and the
//! admin and health services (which report it). Lock-free: atomics only.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

use super::proto::State;

/// Where the broker is in its life, with recovery progress.
#[derive(Debug, Default)]
pub struct BrokerStatus {
    state: AtomicU8,
    recovered: AtomicU32,
    total: AtomicU32,
    clean_start: AtomicBool,
    segments_scanned: AtomicU32,
}

impl BrokerStatus {
    /// A status in `STARTING`.
    pub fn new() -> Self {
        let status = BrokerStatus::default();
        status.set(State::Starting);
        status
    }

    /// Moves to `state`.
    pub fn set(&self, state: State) {
        self.state.store(state as u8, Ordering::SeqCst);
    }

    /// The current state.
    pub fn state(&self) -> State {
        State::try_from(i32::from(self.state.load(Ordering::SeqCst))).unwrap_or(State::Unspecified)
    }

    /// Starts log recovery of `total` partitions.
    pub fn begin_recovery(&self, total: u32) {
        self.total.store(total, Ordering::SeqCst);
        self.recovered.store(0, Ordering::SeqCst);
        self.set(State::Recovering);
    }

    /// One more partition log is open.
    pub fn partition_recovered(&self) {
        self.recovered.fetch_add(1, Ordering::SeqCst);
    }

    /// Partitions recovered so far and in all.
    pub fn progress(&self) -> (u32, u32) {
        (
            self.recovered.load(Ordering::SeqCst),
            self.total.load(Ordering::SeqCst),
        )
    }

    /// Records whether the previous stop was clean.
    pub fn set_clean_start(&self, clean: bool) {
        self.clean_start.store(clean, Ordering::SeqCst);
    }

    /// Counts segments that recovery had to scan.
    pub fn add_segments_scanned(&self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.segments_scanned.fetch_add(n, Ordering::SeqCst);
    }

    /// Segments scanned at this start.
    pub fn segments_scanned(&self) -> u32 {
        self.segments_scanned.load(Ordering::SeqCst)
    }

    /// Whether the previous stop was clean.
    pub fn clean_start(&self) -> bool {
        self.clean_start.load(Ordering::SeqCst)
    }
}
