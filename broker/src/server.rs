//! The broker's run loop: open storage, bind the Kafka listener, accept connections under
//! a connection limit, and shut down in one visible order — stop accepting, let in-flight
//! requests finish within the grace period, then close every log cleanly.
//!
//! A failed write or fsync in the data directory takes the same path (as Kafka halts when
//! its last log directory fails): storage refuses every later write there, the failure
//! cancels the shutdown token, the broker fences itself so leadership moves to the ISR
//! at once, and [`Broker::run`] returns [`Stopped::LogDirFailed`] for `main` to exit
//! non-zero. The logs are not closed cleanly, so the next start recovers them by scanning.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use crate::cluster::{LeaderBalance, Quorum, QuorumConfig, QuorumError, Sessions};
use crate::config::BrokerConfig;
use crate::connection;
use crate::context::{BrokerContext, StartError};
use crate::flusher::Flusher;
use crate::metadata::{MetadataImage, MetadataRecord};
use crate::ops::grpc::GrpcEndpoint;
use crate::ops::metrics::{Metrics, MetricsEndpoint};
use crate::ops::proto::State;
use crate::ops::status::BrokerStatus;

/// A started broker: its addresses and what it needs to serve and stop.
pub struct Broker {
    /// The address the Kafka listener is bound to.
    pub local_addr: SocketAddr,
    /// The gRPC health and admin address, when enabled.
    pub health_addr: Option<SocketAddr>,
    /// The `/metrics` address, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    ctx: Arc<BrokerContext>,
    listener: TcpListener,
    shutdown: CancellationToken,
    status: Arc<BrokerStatus>,
    grpc: Option<GrpcEndpoint>,
    metrics: Option<MetricsEndpoint>,
    flusher: (CancellationToken, tokio::task::JoinHandle<()>),
    /// This run's registration with the cluster, in a cluster.
    incarnation: Option<uuid::Uuid>,
    /// The `--debug-fail-fsync-after-file` test hook, armed for the broker's lifetime.
    _disk_faults: Option<runnel_storage::fs::FaultGuard>,
}

/// Why [`Broker::run`] returned.
#[derive(Debug)]
pub enum Stopped {
    /// The shutdown token was cancelled (SIGTERM, SIGINT, a test).
    Requested,
    /// A write or fsync in the data directory failed: the broker stopped, as Kafka does
    /// when its last log directory fails. What it wrote last may not be on disk; the
    /// next start recovers the logs by scanning them.
    LogDirFailed(runnel_storage::LogError),
}

impl Broker {
    /// Starts the health, admin and metrics endpoints, binds the Kafka listener and opens
    /// (recovers) storage — reporting progress on the admin service meanwhile. The broker
    /// serves clients once [`Broker::run`] is awaited.
    pub async fn bind(
        config: BrokerConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        // Every request is checked against these: a broker without them must not start.
        crate::bounds::messages()?;
        let status = Arc::new(BrokerStatus::new());
        let metrics = Arc::new(Metrics::new()?);
        let node_id = config.node_id;
        let grpc = match config.health_listen {
            Some(addr) => Some(
                GrpcEndpoint::start(addr, Arc::clone(&status), node_id)
                    .await
                    .map_err(|source| StartError::Listen {
                        listener: "health",
                        addr,
                        source,
                    })?,
            ),
            None => None,
        };
        let cell = grpc
            .as_ref()
            .map_or_else(|| Arc::new(OnceLock::new()), |g| Arc::clone(&g.ctx));
        let metrics_endpoint = match config.metrics_listen {
            Some(addr) => Some(
                MetricsEndpoint::start(addr, Arc::clone(&cell), Arc::clone(&metrics))
                    .await
                    .map_err(|source| StartError::Listen {
                        listener: "metrics",
                        addr,
                        source,
                    })?,
            ),
            None => None,
        };
        let listen_error = |source| StartError::Listen {
            listener: "kafka",
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(listen_error)?;
        let local_addr = listener.local_addr().map_err(listen_error)?;
        let advertised = match &config.advertised_listener {
            Some(_) => config.advertised(),
            None => (local_addr.ip().to_string(), i32::from(local_addr.port())),
        };
        // A data directory of another broker or cluster is refused before anything joins.
        crate::cluster::identity::check_and_record(
            &config.data_dir,
            config.node_id,
            config.cluster_id.as_deref(),
            "",
        )?;
        let (quorum, incarnation) = match config.voters() {
            Some(voters) => {
                let (quorum, incarnation) =
                    join_cluster(&config, voters, &advertised, &shutdown).await?;
                (Some(Arc::new(quorum)), Some(incarnation))
            }
            None => (None, None),
        };
        let disk_faults = config.debug_fail_fsync_after_file.as_ref().map(|trigger| {
            warn!(trigger = %trigger.display(), "test hook armed: log fsyncs fail while this file exists");
            let metadata = config.data_dir.join("__cluster_metadata");
            runnel_storage::fs::inject_while_file_exists(&config.data_dir, &[metadata], trigger)
        });
        let opening = Arc::clone(&status);
        let flusher_stop = CancellationToken::new();
        let (flusher, flusher_task) = Flusher::start(Arc::clone(&metrics), flusher_stop.clone());
        let ctx = tokio::task::spawn_blocking(move || {
            BrokerContext::open(config, advertised, &opening, metrics, flusher, quorum)
        })
        .await??;
        let ctx = Arc::new(ctx);
        let _ = cell.set(Arc::clone(&ctx));
        Ok(Broker {
            local_addr,
            health_addr: grpc.as_ref().map(|g| g.local_addr),
            metrics_addr: metrics_endpoint.as_ref().map(|m| m.local_addr),
            ctx,
            listener,
            shutdown,
            status,
            grpc,
            metrics: metrics_endpoint,
            flusher: (flusher_stop, flusher_task),
            incarnation,
            _disk_faults: disk_faults,
        })
    }

    /// Serves until the shutdown token is cancelled or the data directory fails, then
    /// shuts down: cleanly in the first case; in the second the logs are left for
    /// recovery (see the module docs).
    pub async fn run(self) -> Stopped {
        let Broker {
            local_addr,
            ctx,
            listener,
            shutdown,
            status,
            grpc,
            metrics,
            flusher,
            incarnation,
            _disk_faults,
            ..
        } = self;
        // The first failed write or fsync of any log (the flusher's, a produce's, a
        // replica fetcher's, maintenance's) stops the broker through the one shutdown path.
        let stop = shutdown.clone();
        ctx.partitions.dir_health().on_failure(move |e| {
            tracing::error!(error = %e, "the data directory failed: stopping the broker");
            stop.cancel();
        });
        status.set(State::Running);
        if let Some(g) = &grpc {
            g.set_serving(true).await;
        }
        let connections = TaskTracker::new();
        let timers = tokio::spawn(group_timers(Arc::clone(&ctx), shutdown.clone()));
        let follower = ctx.quorum().map(|q| {
            tokio::spawn(follow_metadata(
                Arc::clone(&ctx),
                q.image(),
                shutdown.clone(),
            ))
        });
        let maintenance = tokio::spawn(crate::maintenance::run(Arc::clone(&ctx), shutdown.clone()));
        let isr = tokio::spawn(crate::replication::isr::maintain(
            Arc::clone(&ctx),
            shutdown.clone(),
        ));
        let limit = Arc::new(Semaphore::new(ctx.config.max_connections as usize));
        info!(%local_addr, advertised = ?ctx.advertised, "runnel-broker is serving");
        loop {
            // Take a connection slot before accepting, so a flood waits in the backlog.
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = Arc::clone(&limit).acquire_owned() => permit,
            };
            let Ok(permit) = permit else { break };
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let ctx = Arc::clone(&ctx);
                    let token = shutdown.clone();
                    connections.spawn(
                        async move {
                            connection::serve(stream, ctx, token).await;
                            drop(permit);
                        }
                        .instrument(info_span!("connection", %peer)),
                    );
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        info!("shutting down: no longer accepting connections");
        status.set(State::ShuttingDown);
        // Controlled shutdown: the cluster stops sending clients here at once instead of
        // after a missed session.
        if let (Some(quorum), Some(incarnation)) = (ctx.quorum(), incarnation) {
            quorum.stop_heartbeats();
            let fence = quorum.write(vec![MetadataRecord::FenceBroker {
                node_id: ctx.node_id(),
                incarnation,
            }]);
            match tokio::time::timeout(Duration::from_secs(5), fence).await {
                Ok(Ok(_)) => info!("fenced this broker in the cluster metadata"),
                Ok(Err(e)) => warn!(error = %e, "could not fence this broker before stopping"),
                Err(_) => warn!("fencing this broker before stopping timed out"),
            }
        }
        if let Some(g) = &grpc {
            g.set_serving(false).await;
        }
        drop(listener);
        connections.close();
        let grace = Duration::from_millis(ctx.config.shutdown_grace_ms);
        if tokio::time::timeout(grace, connections.wait())
            .await
            .is_err()
        {
            warn!(
                ?grace,
                "in-flight requests did not finish within the grace period"
            );
        }
        let _ = timers.await;
        let _ = maintenance.await;
        // The quorum stops first: a metadata write still waiting for a majority (an ISR
        // change, with the other brokers gone) then fails at once instead of holding the
        // metadata lock, and with it the last metadata apply, until it times out.
        if let Some(quorum) = ctx.quorum() {
            quorum.shutdown().await;
        }
        let _ = isr.await;
        if let Some(follower) = follower {
            let _ = follower.await;
        }
        // In-flight produce requests are done: let the flusher finish its queue and stop.
        flusher.0.cancel();
        let _ = flusher.1.await;
        ctx.request_budget.close();
        let closing = Arc::clone(&ctx);
        match tokio::task::spawn_blocking(move || closing.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(problems)) => {
                for p in problems {
                    warn!(problem = %p, "closing was not clean; the next start will recover");
                }
            }
            Err(e) => warn!(error = %e, "closing the logs failed"),
        }
        if let Some(m) = metrics {
            m.stop().await;
        }
        if let Some(g) = grpc {
            g.stop().await;
        }
        match ctx.partitions.dir_health().check() {
            Ok(()) => {
                info!("runnel-broker stopped");
                Stopped::Requested
            }
            Err(e) => {
                info!("runnel-broker stopped after its data directory failed");
                Stopped::LogDirFailed(e)
            }
        }
    }
}

/// How often group timers (sessions, rebalance timeouts) are advanced.
const GROUP_TICK: Duration = Duration::from_millis(100);

/// Advances consumer-group timers and expires old committed offsets until shutdown.
async fn group_timers(ctx: Arc<BrokerContext>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(GROUP_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let check_every = Duration::from_millis(ctx.config.offsets_retention_check_interval_ms);
    let mut next_expiry_check = tokio::time::Instant::now() + check_every;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        ctx.groups.tick(std::time::Instant::now());
        if tokio::time::Instant::now() >= next_expiry_check {
            next_expiry_check += check_every;
            expire_offsets(&ctx).await;
        }
    }
}

/// Deletes committed offsets of groups that have been empty past `offsets.retention.minutes`.
async fn expire_offsets(ctx: &Arc<BrokerContext>) {
    let expired = ctx.groups.expired_offsets(
        std::time::Instant::now(),
        crate::handlers::produce::now_ms(),
    );
    if expired.is_empty() {
        return;
    }
    let mut by_group: std::collections::BTreeMap<String, Vec<_>> =
        std::collections::BTreeMap::new();
    for record in expired {
        by_group
            .entry(record.group.clone())
            .or_default()
            .push(record);
    }
    for (group, records) in by_group {
        let ctx2 = Arc::clone(ctx);
        let (g, r) = (group.clone(), records.clone());
        let now = crate::handlers::produce::now_ms();
        match tokio::task::spawn_blocking(move || crate::groups::store::write(&ctx2, &g, &r, now))
            .await
        {
            Ok(Ok(_)) => {
                info!(
                    group,
                    offsets = records.len(),
                    "expired committed offsets (offsets.retention.minutes)"
                );
                ctx.groups.apply_offsets(records, std::time::Instant::now());
            }
            Ok(Err(e)) => warn!(group, error = %e, "expiring offsets failed"),
            Err(e) => warn!(group, error = %e, "expiring offsets failed"),
        }
    }
}

/// Starts this broker's member of the metadata quorum, waits for a leader, registers the
/// broker (which also brings its metadata up to date) and settles the cluster id.
async fn join_cluster(
    config: &BrokerConfig,
    voters: std::collections::BTreeMap<u64, String>,
    advertised: &(String, i32),
    shutdown: &CancellationToken,
) -> Result<(Quorum, uuid::Uuid), StartError> {
    let node_id = u64::try_from(config.node_id).unwrap_or_default();
    let Some(listen) = config.controller_listen else {
        return Err(crate::config::InvalidSetting::ControllerListen.into());
    };
    let controller = voters
        .get(&node_id)
        .cloned()
        .unwrap_or_else(|| format!("{}:{}", advertised.0, listen.port()));
    let mut quorum_config = QuorumConfig::new(
        node_id,
        listen,
        controller,
        voters,
        config.data_dir.join("__cluster_metadata").join("raft"),
    );
    quorum_config.sessions = Sessions {
        heartbeat: Duration::from_millis(config.broker_heartbeat_interval_ms),
        timeout: Duration::from_millis(config.broker_session_timeout_ms),
    };
    quorum_config.leader_balance = config.auto_leader_rebalance_enable.then(|| LeaderBalance {
        interval: Duration::from_secs(config.leader_imbalance_check_interval_seconds),
        percentage: config.leader_imbalance_per_broker_percentage,
    });
    let quorum = Quorum::start(quorum_config).await?;
    let incarnation = uuid::Uuid::new_v4();
    let registration = MetadataRecord::RegisterBroker {
        node_id: config.node_id,
        host: advertised.0.clone(),
        port: advertised.1,
        rack: config.broker_rack.clone(),
        incarnation,
    };
    // A cluster whose voters are still starting has no leader: wait, saying so.
    loop {
        let attempt = quorum.write(vec![registration.clone()]);
        tokio::select! {
            result = attempt => match result {
                Ok(_) => break,
                Err(e) => warn!(error = %e, "waiting for the metadata quorum to register this broker"),
            },
            () = shutdown.cancelled() => {
                quorum.shutdown().await;
                return Err(QuorumError::ShuttingDown.into());
            }
        }
    }
    quorum.start_heartbeats(config.node_id, incarnation).await;
    let cluster_id = quorum.image().borrow().cluster_id.clone();
    if cluster_id.is_empty() {
        let cluster_id = config
            .cluster_id
            .clone()
            .unwrap_or_else(crate::context::new_cluster_id);
        quorum
            .write(vec![MetadataRecord::Cluster { cluster_id }])
            .await?;
    }
    let status = quorum.status();
    info!(
        node_id,
        leader = ?status.leader,
        voters = ?status.voters,
        cluster_id = %quorum.image().borrow().cluster_id,
        "joined the cluster"
    );
    Ok((quorum, incarnation))
}

/// Applies every metadata change other brokers commit: partitions to host or delete,
/// topic configs, and each partition's role — starting, re-targeting and stopping the
/// replica fetchers that follow leaders.
async fn follow_metadata(
    ctx: Arc<BrokerContext>,
    mut images: tokio::sync::watch::Receiver<Arc<MetadataImage>>,
    shutdown: CancellationToken,
) {
    let mut fetchers =
        crate::replication::fetcher::Fetchers::new(Arc::clone(&ctx), shutdown.clone());
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                changed = images.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
        first = false;
        let image = Arc::clone(&images.borrow_and_update());
        let applying = Arc::clone(&ctx);
        let applied = Arc::clone(&image);
        match tokio::task::spawn_blocking(move || applying.apply_image(&applied)).await {
            Ok(Ok(())) => fetchers.update(&image),
            Ok(Err(e)) => tracing::error!(error = %e, "cannot host what the cluster metadata says"),
            Err(e) => tracing::error!(error = %e, "applying cluster metadata failed"),
        }
    }
    fetchers.stop();
}
