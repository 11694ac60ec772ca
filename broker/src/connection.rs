//! One client connection: size-prefixed frames in, responses out in request order.
//!
//! Wire framing (every Kafka request and response):
//!
//! | bytes | field                                      |
//! |-------|--------------------------------------------|
//! | 0..4  | size: i32, big-endian, bytes that follow   |
//! | 4..   | header + body                              |
//!
//! The size is checked against `socket.request.max.bytes` (and for being negative)
//! before a byte of the body is allocated, and the body's buffer is taken from the
//! broker-wide `queued.max.request.bytes` budget as its bytes arrive, until the request
//! is answered.
//! Requests are read ahead (pipelining) and handled one at a time, in the order they came.
//! Answers waiting to be written are bounded by the in-flight limit; a Fetch answer
//! holds its records only as file regions (see `sendfile`), so its size in memory does
//! not grow with the request's `max_bytes`.

use std::sync::Arc;

use bytes::{BufMut, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

use crate::context::BrokerContext;
use crate::dispatch::{self, Reply};
use crate::sendfile;

/// Buffer size a frame starts with; it grows as its bytes arrive.
const INITIAL_FRAME_CAPACITY: usize = 64 * 1024;

/// Why reading a frame failed; each closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("frame size {0} is negative")]
    Negative(i32),
    /// The size prefix is larger than `socket.request.max.bytes`.
    #[error("frame size {size} exceeds socket.request.max.bytes ({max})")]
    TooLarge {
        /// Size the client announced.
        size: i32,
        /// The configured maximum.
        max: u32,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// No request budget (`queued.max.request.bytes`) came free for the frame in time.
    #[error("queued.max.request.bytes stayed exhausted while the frame arrived")]
    BudgetExhausted,
    /// A socket error.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// A request frame together with its share of the request memory budget.
pub struct Frame {
    /// Header and body, without the size prefix.
    pub bytes: Bytes,
    /// Returned to the budget when the frame is dropped.
    pub _permit: OwnedSemaphorePermit,
    /// When the whole frame had arrived.
    pub arrived: std::time::Instant,
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
///
/// The frame's buffer grows with the bytes that actually arrive, and each growth first
/// takes its size from the shared `budget`: a client that announces a large frame and
/// then trickles holds only what it sent (at most twice that, and at least the first
/// 64 KiB), so a few such clients cannot starve every other connection of the budget.
/// A frame that waits longer than [`BUDGET_WAIT`] for more budget mid-way is dropped
/// with its connection: partial frames holding all of the budget between them would
/// otherwise wait for each other forever.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
    budget: &Arc<Semaphore>,
) -> Result<Option<Frame>, FrameError> {
    read_frame_waiting(reader, max, budget, BUDGET_WAIT).await
}

/// [`read_frame`] with the longest wait for budget given.
async fn read_frame_waiting<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
    budget: &Arc<Semaphore>,
    wait: std::time::Duration,
) -> Result<Option<Frame>, FrameError> {
    let mut size_buf = [0u8; 4];
    match reader.read_exact(&mut size_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size_buf);
    let len = checked_frame_len(size, max)? as usize;
    let first = len.min(INITIAL_FRAME_CAPACITY);
    // The budget is at least `max` (checked at start-up), so one frame alone always fits.
    let mut permit = take_budget(budget, first, wait).await?;
    // A Vec, not a BytesMut: `reserve_exact` keeps the buffer at what the budget paid for.
    let mut body: Vec<u8> = Vec::with_capacity(first);
    while body.len() < len {
        let want = len - body.len();
        if body.capacity() == body.len() {
            // Double, up to the frame's size.
            let grow = want.min(body.len().max(INITIAL_FRAME_CAPACITY));
            permit.merge(take_budget(budget, grow, wait).await?);
            body.reserve_exact(grow);
        }
        let room = want.min(body.capacity() - body.len());
        let n = reader.read_buf(&mut (&mut body).limit(room)).await?;
        if n == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(Some(Frame {
        bytes: Bytes::from(body),
        _permit: permit,
        arrived: std::time::Instant::now(),
    }))
}

/// How long a frame may wait for budget before its connection is closed.
pub const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes `bytes` of the request budget, waiting at most `wait`.
async fn take_budget(
    budget: &Arc<Semaphore>,
    bytes: usize,
    wait: std::time::Duration,
) -> Result<OwnedSemaphorePermit, FrameError> {
    // `bytes` is at most a frame's length, which is a u32.
    let n = u32::try_from(bytes).map_err(|_| FrameError::BudgetExhausted)?;
    match tokio::time::timeout(wait, Arc::clone(budget).acquire_many_owned(n)).await {
        Ok(Ok(permit)) => Ok(permit),
        // A closed semaphore means shutdown.
        Ok(Err(_)) => Err(FrameError::Truncated),
        Err(_) => Err(FrameError::BudgetExhausted),
    }
}

/// Validates a size prefix: not negative, at most `max`.
pub fn checked_frame_len(size: i32, max: u32) -> Result<u32, FrameError> {
    let len = u32::try_from(size).map_err(|_| FrameError::Negative(size))?;
    if len > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(len)
}

/// Serves one connection until the peer closes it, it misbehaves, or shutdown begins.
/// In-flight requests are answered before the connection closes.
pub async fn serve(stream: TcpStream, ctx: Arc<BrokerContext>, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let client_host: Arc<str> = stream
        .peer_addr()
        .map(|a| format!("/{}", a.ip()))
        .unwrap_or_default()
        .into();
    let (mut reader, mut writer) = stream.into_split();
    ctx.metrics.connections.inc();
    let _gauge = ConnectionGauge(Arc::clone(&ctx));
    let in_flight = ctx.config.max_in_flight_requests as usize;
    let (tx, mut rx) = mpsc::channel::<Frame>(in_flight);
    let (reply_tx, mut reply_rx) = mpsc::channel::<Reply>(in_flight);

    // Requests are read ahead (up to `in_flight`) and handled one at a time in arrival
    // order, as Kafka does: a client's pipelined produce requests land in the order it
    // sent them. Each runs in its own task so a panic closes only this connection. A
    // handler may answer `Later` (acks=all waiting for its fsync): the next request is
    // handled meanwhile, and the writer still sends answers in request order.
    let handler_ctx = Arc::clone(&ctx);
    let handle_task = tokio::spawn(
        async move {
            while let Some(frame) = rx.recv().await {
                let handling = dispatch::handle_frame(
                    Arc::clone(&handler_ctx),
                    frame,
                    Arc::clone(&client_host),
                );
                let reply = match tokio::spawn(handling.in_current_span()).await {
                    Ok(reply) => reply,
                    Err(e) => {
                        tracing::error!(error = %e, "request handler failed; closing the connection");
                        Reply::Close
                    }
                };
                let close = matches!(reply, Reply::Close);
                if reply_tx.send(reply).await.is_err() || close {
                    break;
                }
            }
        }
        .in_current_span(),
    );
    // A client that stops reading would hold this connection (and, through the bounded
    // queues, its requests) forever: a response it has not taken within
    // `connections.max.idle.ms` closes the connection.
    let idle = ctx.config.idle_timeout();
    let write_task = tokio::spawn(
        async move {
            while let Some(mut reply) = reply_rx.recv().await {
                if let Reply::Later(pending) = reply {
                    reply = pending.await;
                }
                let written = match reply {
                    Reply::Frame(bytes) => {
                        tokio::time::timeout(idle, writer.write_all(&bytes)).await
                    }
                    // Fetch records: sent from the segment files; nothing but the
                    // encoded fields is held in memory while the frame waits here.
                    Reply::Chunks(chunks) => {
                        tokio::time::timeout(idle, sendfile::write_chunks(&mut writer, &chunks))
                            .await
                    }
                    Reply::None | Reply::Later(_) => Ok(Ok(())),
                    Reply::Close => break,
                };
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        debug!(error = %e, "writing a response failed");
                        break;
                    }
                    Err(_) => {
                        debug!("the client took no response for connections.max.idle.ms; closing");
                        break;
                    }
                }
            }
            let _ = writer.shutdown().await;
        }
        .in_current_span(),
    );

    let max = ctx.config.socket_request_max_bytes;
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            read = tokio::time::timeout(idle, read_frame(&mut reader, max, &ctx.request_budget)) => read,
        };
        let frame = match frame {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                debug!(error = %e, "closing the connection");
                break;
            }
            Err(_) => {
                debug!("closing an idle connection (connections.max.idle.ms)");
                break;
            }
        };
        let queued = tokio::select! {
            _ = shutdown.cancelled() => break,
            queued = tx.send(frame) => queued,
        };
        if queued.is_err() {
            break; // the writer has stopped: the connection is going away
        }
    }
    drop(tx);
    let _ = handle_task.await;
    let _ = write_task.await;
}

/// Decrements the open-connections gauge when the connection ends, however it ends.
struct ConnectionGauge(Arc<BrokerContext>);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.metrics.connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn frame_length_bounds() {
        let max = 1000;
        assert_eq!(checked_frame_len(999, max).ok(), Some(999));
        assert_eq!(checked_frame_len(1000, max).ok(), Some(1000));
        assert!(matches!(
            checked_frame_len(1001, max),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            checked_frame_len(-1, max),
            Err(FrameError::Negative(-1))
        ));
        assert!(matches!(
            checked_frame_len(i32::MIN, max),
            Err(FrameError::Negative(_))
        ));
        assert_eq!(checked_frame_len(0, max).ok(), Some(0));
    }

    #[tokio::test]
    async fn reads_frames_and_detects_truncation() {
        let budget = Arc::new(Semaphore::new(1 << 20));
        let mut input: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 5, b'x'];
        let frame = read_frame(&mut input, 100, &budget).await;
        assert_eq!(
            frame.ok().flatten().map(|f| f.bytes),
            Some(Bytes::from_static(b"abc"))
        );
        let torn = read_frame(&mut input, 100, &budget).await;
        assert!(matches!(torn, Err(FrameError::Truncated)));
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut empty, 100, &budget).await,
            Ok(None)
        ));
    }

    #[tokio::test]
    async fn oversize_frame_is_refused_before_allocation() {
        let budget = Arc::new(Semaphore::new(1 << 20));
        let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        let res = read_frame(&mut input, 100, &budget).await;
        assert!(matches!(res, Err(FrameError::TooLarge { .. })));
        assert_eq!(budget.available_permits(), 1 << 20);
    }

    #[tokio::test]
    async fn a_trickling_frame_holds_budget_for_what_it_sent() {
        let total = 300 << 20;
        let budget = Arc::new(Semaphore::new(total));
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let announced: i32 = 100 << 20;
        client.write_all(&announced.to_be_bytes()).await.unwrap();
        client.write_all(b"x").await.unwrap();
        let reading = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move {
                read_frame(&mut server, 200 << 20, &budget)
                    .await
                    .map(|f| f.map(|f| f.bytes.len()))
            })
        };
        // The reader has taken its first share and waits for more bytes.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while budget.available_permits() == total {
            assert!(tokio::time::Instant::now() < deadline, "no budget taken");
            tokio::task::yield_now().await;
        }
        assert_eq!(budget.available_permits(), total - INITIAL_FRAME_CAPACITY);
        // Sending the rest takes the rest, and the whole frame arrives.
        let rest = vec![7u8; (announced as usize) - 1];
        client.write_all(&rest).await.unwrap();
        let got = reading.await.unwrap().unwrap();
        assert_eq!(got, Some(announced as usize));
    }

    #[tokio::test]
    async fn a_frame_that_cannot_get_budget_in_time_is_dropped() {
        let budget = Arc::new(Semaphore::new(1 << 20));
        // Someone else holds all but 64 KiB.
        let _held = Arc::clone(&budget)
            .acquire_many_owned((1 << 20) - INITIAL_FRAME_CAPACITY as u32)
            .await
            .unwrap();
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let announced: i32 = 512 << 10;
        client.write_all(&announced.to_be_bytes()).await.unwrap();
        client
            .write_all(&vec![1u8; INITIAL_FRAME_CAPACITY])
            .await
            .unwrap();
        let wait = std::time::Duration::from_millis(100);
        let res = read_frame_waiting(&mut server, 1 << 20, &budget, wait).await;
        assert!(
            matches!(res, Err(FrameError::BudgetExhausted)),
            "{:?}",
            res.err()
        );
        // Its share went back.
        assert_eq!(budget.available_permits(), INITIAL_FRAME_CAPACITY);
    }
}
