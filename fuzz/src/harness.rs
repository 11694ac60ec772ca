//! One broker, in-process: a [`BrokerContext`] opened on a temporary data dir, with the
//! flusher the server would start, and frames handed to
//! [`runnel_broker::dispatch::handle_frame`] exactly as a connection hands them.
//!
//! Time: the worker's runtime runs on tokio's paused clock, which jumps ahead whenever
//! every task waits on a timer. A Fetch waiting `max_wait_ms` for data, or a JoinGroup
//! waiting for members, then costs no wall time; blocking work (`spawn_blocking`) holds
//! the clock still while it runs. An acks=all answer waits on the flusher thread, which
//! tokio cannot see, so while one is awaited a blocking task is parked to hold the clock.
//! A frame not answered within [`FRAME_TIMEOUT`] of that clock is given up (dropped, as
//! a connection that goes away drops its requests).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use runnel_broker::connection::Frame;
use runnel_broker::context::BrokerContext;
use runnel_broker::dispatch::{self, Reply};
use runnel_broker::flusher::Flusher;
use runnel_broker::ops::metrics::Metrics;
use runnel_broker::ops::status::BrokerStatus;
use runnel_broker::BrokerConfig;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::check::{self, Violation};

/// Longest a frame may go unanswered, on the paused clock.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// Where data dirs go by default: tmpfs when there is one (fsyncs cost nothing there, and
/// acks=all requests wait for them), else the temporary directory.
pub fn default_data_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join("runnel-fuzz")
    } else {
        std::env::temp_dir().join("runnel-fuzz")
    }
}

/// What became of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response frame was produced (and passed [`check::answer`]).
    Answered,
    /// The broker closed the connection (a malformed request).
    Closed,
    /// No response, as for a Produce with acks=0.
    NoResponse,
    /// Not answered within [`FRAME_TIMEOUT`].
    TimedOut,
}

/// A broker context on its own data dir, torn down by [`Harness::close`].
pub struct Harness {
    ctx: Arc<BrokerContext>,
    stop: CancellationToken,
    flusher: tokio::task::JoinHandle<()>,
    spare_permits: Arc<Semaphore>,
    client_host: Arc<str>,
    dir: tempfile::TempDir,
}

impl Harness {
    /// Opens a broker on a new directory under `root`. Call on the worker's runtime.
    pub async fn open(root: &Path) -> anyhow::Result<Harness> {
        let dir = tempfile::Builder::new()
            .prefix("runnel-fuzz-")
            .tempdir_in(root)?;
        let mut config = BrokerConfig::for_tests(dir.path().to_path_buf());
        // A group's first rebalance completes at once instead of after 3 s.
        config.group_initial_rebalance_delay_ms = 0;
        let metrics = Arc::new(Metrics::new()?);
        let stop = CancellationToken::new();
        let (flusher_handle, flusher) = Flusher::start(Arc::clone(&metrics), stop.clone());
        let ctx = tokio::task::spawn_blocking(move || {
            BrokerContext::open(
                config,
                ("127.0.0.1".to_string(), 9092),
                &BrokerStatus::new(),
                metrics,
                flusher_handle,
                None,
            )
        })
        .await??;
        Ok(Harness {
            ctx: Arc::new(ctx),
            stop,
            flusher,
            spare_permits: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            client_host: Arc::from("127.0.0.1"),
            dir,
        })
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Advances group timers (sessions, rebalance deadlines), as the server's ticker does.
    pub fn tick(&self) {
        self.ctx.groups.tick(std::time::Instant::now());
    }

    /// Hands one frame (no size prefix) to the broker and checks what comes back.
    pub async fn handle(&self, bytes: Bytes) -> Result<Outcome, Violation> {
        let request = bytes.clone();
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        // The frame's bytes come out of the shared request budget, as in `read_frame`.
        let permit = match Arc::clone(&self.ctx.request_budget).try_acquire_many_owned(len) {
            Ok(p) => p,
            Err(_) => Arc::clone(&self.spare_permits)
                .try_acquire_owned()
                .map_err(|e| Violation(format!("no request budget: {e}")))?,
        };
        let frame = Frame {
            bytes,
            _permit: permit,
            arrived: std::time::Instant::now(),
        };
        let ctx = Arc::clone(&self.ctx);
        let host = Arc::clone(&self.client_host);
        let answer = tokio::time::timeout(FRAME_TIMEOUT, async move {
            let mut reply = dispatch::handle_frame(ctx, frame, host).await;
            while let Reply::Later(pending) = reply {
                reply = hold_clock(pending).await;
            }
            reply
        })
        .await;
        let Ok(reply) = answer else {
            return Ok(Outcome::TimedOut);
        };
        match reply {
            Reply::Frame(response) => {
                check::answer(&request, &response)?;
                Ok(Outcome::Answered)
            }
            Reply::Chunks(chunks) => {
                let response = check::assemble(&chunks)?;
                check::answer(&request, &response)?;
                Ok(Outcome::Answered)
            }
            Reply::None => Ok(Outcome::NoResponse),
            Reply::Close => Ok(Outcome::Closed),
            Reply::Later(_) => Err(Violation("a Later answer survived its loop".into())),
        }
    }

    /// Asks ApiVersions (v3) and requires a good answer listing every served API.
    pub async fn probe(&self) -> anyhow::Result<()> {
        let version = 3;
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::ApiVersions as i16)
            .with_request_api_version(version)
            .with_correlation_id(0x5eed)
            .with_client_id(Some(StrBytes::from_static_str("runnel-fuzz-probe")));
        let body = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("runnel-fuzz"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let mut buf = BytesMut::new();
        header.encode(
            &mut buf,
            ApiKey::ApiVersions.request_header_version(version),
        )?;
        body.encode(&mut buf, version)?;
        let request = buf.freeze();
        let ctx = Arc::clone(&self.ctx);
        let frame = Frame {
            bytes: request.clone(),
            _permit: Arc::clone(&self.spare_permits).try_acquire_owned()?,
            arrived: std::time::Instant::now(),
        };
        let reply = dispatch::handle_frame(ctx, frame, Arc::clone(&self.client_host)).await;
        let Reply::Frame(response) = reply else {
            anyhow::bail!("ApiVersions was not answered with a frame");
        };
        check::answer(&request, &response)?;
        // size (4) + correlation id (4): ApiVersions answers with response header v0.
        let mut body = response.slice(8..);
        let decoded = ApiVersionsResponse::decode(&mut body, version)?;
        anyhow::ensure!(decoded.error_code == 0, "error {}", decoded.error_code);
        anyhow::ensure!(
            decoded.api_keys.len() == dispatch::ROUTES.len(),
            "{} APIs listed, {} served",
            decoded.api_keys.len(),
            dispatch::ROUTES.len()
        );
        Ok(())
    }

    /// Stops the flusher, closes the logs and removes the data dir.
    pub async fn close(self) -> anyhow::Result<()> {
        let Harness {
            ctx,
            stop,
            flusher,
            dir,
            ..
        } = self;
        stop.cancel();
        flusher.await?;
        let problems = tokio::task::spawn_blocking(move || ctx.close()).await?;
        if let Err(p) = problems {
            anyhow::bail!("closing the logs: {}", p.join("; "));
        }
        dir.close()?;
        Ok(())
    }
}

/// Awaits an acks=all answer with a blocking task parked meanwhile: the flusher thread
/// fsyncs in wall time, and the paused clock must not jump past it to the frame timeout.
async fn hold_clock(
    pending: std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>,
) -> Reply {
    let (release, parked) = std::sync::mpsc::channel::<()>();
    let guard = tokio::task::spawn_blocking(move || {
        let _ = parked.recv();
    });
    let reply = pending.await;
    drop(release);
    let _ = guard.await;
    reply
}
