//! The operator's HTTP endpoint (`--metrics-listen`): Prometheus metrics and the probes.
//!
//! | path | answers |
//! |---|---|
//! | `/metrics` | [`Metrics`] in the Prometheus text format |
//! | `/healthz` | `200 ok` while the process serves HTTP (liveness) |
//! | `/readyz` | `200 ok` once the operator has started (API reachable, CRDs installed), else `503`; a replica waiting for the leader lease is ready too |

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Path of the Prometheus scrape.
pub const METRICS_PATH: &str = "/metrics";
/// Path of the liveness probe.
pub const LIVENESS_PATH: &str = "/healthz";
/// Path of the readiness probe.
pub const READINESS_PATH: &str = "/readyz";

/// The routes of the endpoint. `ready` is read on every readiness probe.
pub fn router(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route(
            METRICS_PATH,
            get(move || {
                let body = metrics.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
            }),
        )
        .route(LIVENESS_PATH, get(|| async { "ok" }))
        .route(
            READINESS_PATH,
            get(move || {
                let ready = ready.load(Ordering::Acquire);
                async move {
                    if ready {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// `GET path` over real TCP; returns the status line and the body.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
            .await
            .unwrap()
            .unwrap();
        let status = response.lines().next().unwrap_or_default().to_string();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn serves_metrics_and_probes_over_tcp() {
        let metrics = Arc::new(Metrics::new(&["topic"]).unwrap());
        metrics.leader.set(1);
        let ready = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            router(Arc::clone(&metrics), Arc::clone(&ready)),
            shutdown.clone(),
        ));

        let (status, _) = get(addr, READINESS_PATH).await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        let (status, body) = get(addr, LIVENESS_PATH).await;
        assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));

        ready.store(true, Ordering::Release);
        let (status, _) = get(addr, READINESS_PATH).await;
        assert_eq!(status, "HTTP/1.1 200 OK");

        let (status, body) = get(addr, METRICS_PATH).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains("runnel_operator_leader 1"), "{body}");
        assert!(
            body.contains("runnel_operator_reconciles_total{controller=\"topic\"} 0"),
            "{body}"
        );

        let (status, _) = get(addr, "/nope").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
