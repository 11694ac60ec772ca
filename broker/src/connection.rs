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
//! before a byte of the body is allocated, and the body's bytes are taken from the
//! broker-wide `queued.max.request.bytes` budget until the request is answered.
//! Requests are read ahead (pipelining) and handled one at a time, in the order they came.
//! Answers waiting to be written are bounded by the in-flight limit; a Fetch answer
//! holds its records only as file regions (see `sendfile`), so its size in memory does
//! not grow with the request's `max_bytes`.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
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
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
    budget: &Arc<Semaphore>,
) -> Result<Option<Frame>, FrameError> {
    let mut size_buf = [0u8; 4];
    match reader.read_exact(&mut size_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size_buf);
    let len = checked_frame_len(size, max)?;
    // The budget is at least `max` (checked at start-up), so this cannot wait forever;
    // a closed semaphore means shutdown.
    let permit = Arc::clone(budget)
        .acquire_many_owned(len)
        .await
        .map_err(|_| FrameError::Truncated)?;
    // Grow with the bytes that actually arrive: a client that announces a large frame and
    // then trickles or stops costs only what it sent.
    let len = len as usize;
    let mut body = BytesMut::with_capacity(len.min(INITIAL_FRAME_CAPACITY));
    while body.len() < len {
        let want = len - body.len();
        if body.capacity() == body.len() {
            body.reserve(want.min(body.len().max(INITIAL_FRAME_CAPACITY)));
        }
        let n = reader.read_buf(&mut (&mut body).limit(want)).await?;
        if n == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(Some(Frame {
        bytes: body.freeze(),
        _permit: permit,
        arrived: std::time::Instant::now(),
    }))
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
}
