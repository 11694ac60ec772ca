//! Writing a response frame made of bytes in memory and regions of segment files: the
//! bytes with `write_all`, the regions with `sendfile(2)`, so record batches go from
//! the page cache to the socket without passing through a buffer of ours.
//!
//! The socket is non-blocking: each `sendfile` sends what fits in the socket buffer
//! and the loop waits for writability in between, like any tokio write. The file side
//! is not asynchronous: pages missing from the page cache are read inside the call,
//! on the runtime thread, as in Kafka's network threads. Fetch asks the kernel to read
//! them ahead ([`prefetch`], from a blocking thread) when it picks the regions, and the
//! data most fetches ask for was just written, so it is usually already cached.

use std::io;
use std::num::NonZeroU64;

use bytes::Bytes;
use runnel_storage::FileRegion;
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Most bytes handed to one `sendfile` call; the kernel sends at most what fits in the
/// socket buffer anyway, this only keeps the count well inside every type involved.
const MAX_SEND: u64 = 1 << 30;

/// Part of a response frame.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Encoded bytes.
    Bytes(Bytes),
    /// Bytes to send from a file.
    File(FileRegion),
}

impl Chunk {
    /// Number of bytes the chunk puts on the wire.
    pub fn len(&self) -> u64 {
        match self {
            Chunk::Bytes(b) => b.len() as u64,
            Chunk::File(r) => r.len(),
        }
    }

    /// Whether the chunk puts nothing on the wire.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes `chunks` in order to `socket` through `writer` (its write half). A file
/// region that turns out shorter than promised (its file was truncated) is an
/// `UnexpectedEof` error: the frame's size prefix already counted those bytes, so the
/// connection must be closed rather than continued out of step.
pub async fn write_chunks<W>(writer: &mut W, chunks: &[Chunk]) -> io::Result<()>
where
    W: AsyncWrite + AsRef<TcpStream> + Unpin,
{
    for chunk in chunks {
        match chunk {
            Chunk::Bytes(bytes) => writer.write_all(bytes).await?,
            Chunk::File(region) => send_region(writer.as_ref(), region).await?,
        }
    }
    Ok(())
}

/// Sends the whole of `region` with `sendfile(2)`.
async fn send_region(socket: &TcpStream, region: &FileRegion) -> io::Result<()> {
    let mut position = region.position();
    let end = position
        .checked_add(region.len())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "file region past u64::MAX"))?;
    while position < end {
        let count = usize::try_from((end - position).min(MAX_SEND)).unwrap_or(usize::MAX);
        socket.writable().await?;
        let sent = socket.try_io(Interest::WRITABLE, || {
            // `sendfile` advances `position` by what it sent.
            rustix::fs::sendfile(socket, region, Some(&mut position), count)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} ends at {position}, inside a region that was to end at {end}",
                        region.path().display()
                    ),
                ))
            }
            Ok(_) => {}
            // Not writable after all (readiness is cleared), or a signal: try again.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Asks the kernel to start reading `region` into the page cache, so that sending it
/// later does not wait for the disk on the runtime thread. Advisory: failures are
/// ignored. Call from a blocking thread (the request itself may block briefly).
pub fn prefetch(region: &FileRegion) {
    if let Some(len) = NonZeroU64::new(region.len()) {
        let _ = rustix::fs::fadvise(
            region,
            region.position(),
            Some(len),
            rustix::fs::Advice::WillNeed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A connected pair: (the write half under test, the peer).
    async fn pair() -> (tokio::net::tcp::OwnedWriteHalf, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (_, write) = client.unwrap().into_split();
        (write, accepted.unwrap().0)
    }

    fn file_with(contents: &[u8]) -> (tempfile::NamedTempFile, Arc<std::fs::File>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents).unwrap();
        let handle = Arc::new(f.reopen().unwrap());
        (f, handle)
    }

    fn region(file: &Arc<std::fs::File>, position: u64, len: u64) -> FileRegion {
        FileRegion::new(
            Arc::clone(file),
            Arc::from(Path::new("test")),
            position,
            len,
        )
    }

    #[tokio::test]
    async fn bytes_and_regions_arrive_in_order() {
        // Larger than any socket buffer, so sendfile returns partial counts and EAGAIN.
        let contents: Vec<u8> = (0..12 << 20).map(|i: u32| (i % 251) as u8).collect();
        let (_tmp, file) = file_with(&contents);
        let chunks = vec![
            Chunk::Bytes(Bytes::from_static(b"head")),
            Chunk::File(region(&file, 7, 10 << 20)),
            Chunk::Bytes(Bytes::from_static(b"mid")),
            Chunk::File(region(&file, 0, 5)),
            Chunk::File(region(&file, 3, 0)),
        ];
        let total: u64 = chunks.iter().map(Chunk::len).sum();
        let (mut write, mut peer) = pair().await;
        let writing = tokio::spawn(async move { write_chunks(&mut write, &chunks).await });
        let mut got = vec![0u8; usize::try_from(total).unwrap()];
        peer.read_exact(&mut got).await.unwrap();
        writing.await.unwrap().unwrap();
        let mut expect = b"head".to_vec();
        expect.extend_from_slice(&contents[7..7 + (10 << 20)]);
        expect.extend_from_slice(b"mid");
        expect.extend_from_slice(&contents[..5]);
        assert!(got == expect, "bytes differ");
    }

    #[tokio::test]
    async fn a_short_file_is_an_error_not_a_short_frame() {
        let (_tmp, file) = file_with(b"0123456789");
        let (mut write, _peer) = pair().await;
        for (position, len) in [(4, 10), (10, 1), (20, 5)] {
            let err = write_chunks(&mut write, &[Chunk::File(region(&file, position, len))])
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{position}+{len}");
        }
        prefetch(&region(&file, 0, 10));
    }
}
