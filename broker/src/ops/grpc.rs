//! The gRPC endpoint on `--health-listen`: `grpc.health.v1.Health` (SERVING once logs are
//! recovered and the Kafka listener is up, NOT_SERVING while shutting down — so
//! Kubernetes gRPC probes need no shell) and `runnel.admin.v1.BrokerAdmin` for the operator.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::proto::broker_admin_server::{BrokerAdmin, BrokerAdminServer};
use super::proto::{
    BrokerState, CanRestartRequest, CanRestartResponse, CaughtUpRequest, CaughtUpResponse,
    GetStateRequest,
};
use super::status::BrokerStatus;
use crate::context::BrokerContext;

/// The admin service: reads the status and, once open, the broker context.
pub struct AdminService {
    status: Arc<BrokerStatus>,
    ctx: Arc<OnceLock<Arc<BrokerContext>>>,
    node_id: i32,
}

#[tonic::async_trait]
impl BrokerAdmin for AdminService {
    async fn get_state(
        &self,
        _: Request<GetStateRequest>,
    ) -> Result<Response<BrokerState>, Status> {
        let (recovered, total) = self.status.progress();
        Ok(Response::new(BrokerState {
            state: self.status.state() as i32,
            node_id: self.node_id,
            partitions_recovered: recovered,
            partitions_total: total,
            version: env!("CARGO_PKG_VERSION").to_string(),
            clean_start: self.status.clean_start(),
            segments_scanned: self.status.segments_scanned(),
        }))
    }

    async fn can_restart(
        &self,
        _: Request<CanRestartRequest>,
    ) -> Result<Response<CanRestartResponse>, Status> {
        let Some(ctx) = self.ctx.get() else {
            return Ok(Response::new(CanRestartResponse {
                safe: false,
                reasons: vec!["the broker is still starting".to_string()],
            }));
        };
        let reasons = restart_blockers(ctx);
        Ok(Response::new(CanRestartResponse {
            safe: reasons.is_empty(),
            reasons,
        }))
    }

    async fn caught_up(
        &self,
        _: Request<CaughtUpRequest>,
    ) -> Result<Response<CaughtUpResponse>, Status> {
        let running = self.status.state() == super::proto::State::Running;
        let lagging = match self.ctx.get() {
            Some(ctx) if running => lagging_partitions(ctx),
            _ => Vec::new(),
        };
        Ok(Response::new(CaughtUpResponse {
            caught_up: running && lagging.is_empty(),
            lagging_partitions: lagging,
        }))
    }
}

/// Partitions that would drop below `min.insync.replicas` if this broker stopped now:
/// those whose ISR holds this broker and would then be smaller than the topic's
/// `min.insync.replicas`.
///
/// A partition counts only when its replication factor exceeds its `min.insync.replicas`:
/// one that cannot tolerate losing a replica anyway (e.g. replication factor 1) never
/// becomes safe by waiting, so it does not block a restart (Strimzi's rule too).
pub fn restart_blockers(ctx: &BrokerContext) -> Vec<String> {
    let image = ctx.image();
    let me = ctx.node_id();
    let mut reasons = Vec::new();
    for topic in image.topics() {
        let min_isr = crate::replication::min_insync_replicas(ctx, topic);
        for p in topic.partitions_on(me) {
            let replication_factor = topic.replicas(p, me).len();
            let isr = topic.leadership(p, me).isr;
            if !isr.contains(&me) || replication_factor <= min_isr {
                continue;
            }
            let isr_after_stop = isr.len() - 1;
            if isr_after_stop < min_isr {
                reasons.push(format!(
                    "{}-{p}: stopping this broker leaves {isr_after_stop} in-sync replicas, below min.insync.replicas={min_isr}",
                    topic.name
                ));
            }
        }
    }
    reasons
}

/// The partitions with a replica here that is not in their ISR ("topic-partition"):
/// this broker has not caught up with their leaders yet.
pub fn lagging_partitions(ctx: &BrokerContext) -> Vec<String> {
    let image = ctx.image();
    let me = ctx.node_id();
    let mut lagging = Vec::new();
    for topic in image.topics() {
        for p in topic.partitions_on(me) {
            let leadership = topic.leadership(p, me);
            if leadership.leader >= 0 && !leadership.isr.contains(&me) {
                lagging.push(format!("{}-{p}", topic.name));
            }
        }
    }
    lagging
}

/// The running gRPC endpoint.
pub struct GrpcEndpoint {
    /// Flips the health status.
    pub reporter: HealthReporter,
    /// Filled in once the broker context is open.
    pub ctx: Arc<OnceLock<Arc<BrokerContext>>>,
    /// The bound address.
    pub local_addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcEndpoint {
    /// Binds `addr` and serves health (NOT_SERVING at first) and admin until [`GrpcEndpoint::stop`].
    pub async fn start(
        addr: SocketAddr,
        status: Arc<BrokerStatus>,
        node_id: i32,
    ) -> std::io::Result<Self> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        reporter
            .set_not_serving::<BrokerAdminServer<AdminService>>()
            .await;
        let ctx = Arc::new(OnceLock::new());
        let admin = AdminService {
            status,
            ctx: Arc::clone(&ctx),
            node_id,
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let incoming = tokio_stream_from(listener);
        let task = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(health)
                .add_service(BrokerAdminServer::new(admin))
                .serve_with_incoming_shutdown(incoming, stopped.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the gRPC endpoint failed");
            }
        });
        tracing::info!(%local_addr, "gRPC health and admin services listening");
        Ok(GrpcEndpoint {
            reporter,
            ctx,
            local_addr,
            stop,
            task,
        })
    }

    /// Reports SERVING (logs recovered, Kafka listener up) or NOT_SERVING.
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        self.reporter
            .set_service_status(
                <BrokerAdminServer<AdminService> as tonic::server::NamedService>::NAME,
                status,
            )
            .await;
    }

    /// Stops serving. Open `Watch` streams would keep a graceful stop waiting forever,
    /// so after a short wait the server task is aborted.
    pub async fn stop(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(std::time::Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Accepted connections as the stream tonic's server takes.
fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::wrappers::TcpListenerStream::new(listener)
}
