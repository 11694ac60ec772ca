//! Loopback ports for brokers that tests start in other processes or bind later.
//!
//! Asking the kernel for a free port (`bind` to port 0, then closing) is not enough when
//! tests run in parallel: the port is free again at once, and a second ask, or any
//! listener bound to port 0, may be given the same one before the first broker binds
//! it. Two brokers then race for one port, and a test can end up talking to another
//! test's broker (and be reset when that test kills it). [`free_port`] never gives the
//! same port twice in one process, and takes it below the kernel's ephemeral range,
//! which no port-0 bind and no outgoing connection is given.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowest port handed out.
const LOW: u16 = 10_000;

/// Where the kernel's ephemeral range starts when it cannot be read (Linux's default).
const DEFAULT_EPHEMERAL_LOW: u16 = 32_768;

/// Fewest ports below the ephemeral range worth using; with fewer, any port above
/// [`LOW`] is used (still never twice in one process).
const MIN_SPAN: u16 = 1_000;

/// The calls made so far in this process.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// A port on 127.0.0.1 that nothing listened on when asked and that no earlier call in
/// this process returned. Different processes start at different places in the range
/// (by process id); a port another process holds is skipped.
pub fn free_port() -> std::io::Result<u16> {
    let high = match ephemeral_low() {
        low if low >= LOW + MIN_SPAN => low,
        _ => u16::MAX,
    };
    let start = std::process::id().wrapping_mul(7_919);
    next_free(&CALLS, start, high, |port| {
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
    })
}

/// The next port of `LOW..high`, from `start` on, that `is_free` accepts; every call
/// counted by `calls` moves on by one, so no two calls look at the same port until all
/// of them were looked at.
fn next_free(
    calls: &AtomicU32,
    start: u32,
    high: u16,
    is_free: impl Fn(u16) -> bool,
) -> std::io::Result<u16> {
    let span = u32::from(high.saturating_sub(LOW)).max(1);
    for _ in 0..span {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        let offset = u16::try_from(start.wrapping_add(n) % span).unwrap_or(0);
        let port = LOW + offset;
        if is_free(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        format!("no free loopback port left in {LOW}..{high}"),
    ))
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ports_are_never_repeated_and_are_bindable() {
        let ports: Vec<u16> = (0..500).map(|_| free_port().unwrap()).collect();
        let distinct: HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for port in &ports[..20] {
            TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).unwrap();
        }
    }

    #[test]
    fn ports_are_below_the_ephemeral_range() {
        let low = ephemeral_low();
        if low < LOW + MIN_SPAN {
            return; // this machine's ephemeral range leaves no room below it
        }
        for _ in 0..50 {
            let port = free_port().unwrap();
            assert!((LOW..low).contains(&port), "{port} not in {LOW}..{low}");
        }
    }

    #[test]
    fn a_taken_port_is_skipped_and_an_exhausted_range_is_an_error() {
        let calls = AtomicU32::new(0);
        let high = LOW + 4;
        let all_but_second = |port| port != LOW + 1;
        assert_eq!(next_free(&calls, 0, high, all_but_second).unwrap(), LOW);
        assert_eq!(next_free(&calls, 0, high, all_but_second).unwrap(), LOW + 2);
        assert_eq!(next_free(&calls, 0, high, all_but_second).unwrap(), LOW + 3);
        let error = next_free(&calls, 0, high, |_| false).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrNotAvailable);
    }

    #[test]
    fn the_start_offsets_where_the_search_begins() {
        let high = LOW + 100;
        let first = next_free(&AtomicU32::new(0), 3, high, |_| true).unwrap();
        let other = next_free(&AtomicU32::new(0), 250, high, |_| true).unwrap();
        assert_eq!((first, other), (LOW + 3, LOW + 50));
    }
}
