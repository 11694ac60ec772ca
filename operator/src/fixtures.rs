//! Test fixtures: a scripted mock API server (`ApiServerVerifier`) behind a real
//! `kube::Client`, so reconcile tests assert the exact requests a pass makes.
//!
//! A scenario runs as a task that takes requests one by one, asserts their method, path
//! and body, and answers them; a request the script did not expect fails the test, and
//! so does one the script expected but never received ([`ScenarioHandle::finish`]).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

use crate::context::FIELD_MANAGER;
use crate::Context;

/// The fixed instant the test context's clock returns.
pub const TEST_NOW_SECONDS: i64 = 1_700_000_000;

/// The test clock.
pub fn test_now() -> Time {
    Time(Timestamp::from_second(TEST_NOW_SECONDS).unwrap_or_default())
}

impl Context {
    /// A context whose client talks to the returned verifier and whose clock is pinned;
    /// Kafka refuses every connection (a fake, so no test reaches the network).
    pub fn test() -> (Arc<Self>, ApiServerVerifier) {
        let unreachable = crate::kafka::fake::FakeKafka::default();
        unreachable.with_state(|s| s.unreachable = true);
        Self::test_with_admin(Arc::new(unreachable))
    }

    /// Like [`Context::test`], with Kafka reached through `admin`.
    pub fn test_with_admin(
        admin: Arc<dyn crate::kafka::AdminFactory>,
    ) -> (Arc<Self>, ApiServerVerifier) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        (
            Arc::new(Self::with_clock(client, test_now).with_admin(admin)),
            ApiServerVerifier(handle),
        )
    }

    /// [`Context::test_with_admin`] exporting the clusters' work to `metrics`.
    pub fn test_with_metrics(
        admin: Arc<dyn crate::kafka::AdminFactory>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> (Arc<Self>, ApiServerVerifier) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let ctx = Self::with_clock(client, test_now)
            .with_admin(admin)
            .with_metrics(metrics);
        (Arc::new(ctx), ApiServerVerifier(handle))
    }
}

/// The scripted API server.
pub struct ApiServerVerifier(Handle<Request<Body>, Response<Body>>);

/// One received request, checked and decoded, with its reply channel.
pub struct Exchange {
    /// The request's query string (empty when none).
    pub query: String,
    /// The request body as JSON (`Null` when empty).
    pub body: Value,
    reply: SendResponse<Response<Body>>,
}

impl ApiServerVerifier {
    /// Runs `script` against this server as a task; await [`ScenarioHandle::finish`].
    pub fn run<F, Fut>(self, script: F) -> ScenarioHandle
    where
        F: FnOnce(Self) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        ScenarioHandle(tokio::spawn(script(self)))
    }

    /// Takes the next request and asserts its method and path.
    pub async fn expect(&mut self, method: Method, path: &str) -> Exchange {
        let Some((request, reply)) = self.0.next_request().await else {
            panic!("the client went away while the scenario expected {method} {path}");
        };
        assert_eq!(
            (request.method(), request.uri().path()),
            (&method, path),
            "unexpected request {}",
            request.uri()
        );
        let query = request.uri().query().unwrap_or_default().to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Exchange { query, body, reply }
    }

    /// Takes the next request, asserting it is a forced server-side apply (`PATCH` with
    /// the operator's field manager) to `path`.
    pub async fn expect_apply(&mut self, path: &str) -> Exchange {
        let exchange = self.expect(Method::PATCH, path).await;
        assert!(
            exchange
                .query
                .contains(&format!("fieldManager={FIELD_MANAGER}")),
            "{}",
            exchange.query
        );
        assert!(exchange.query.contains("force=true"), "{}", exchange.query);
        exchange
    }
}

impl Exchange {
    /// Answers with `status` and the JSON `body`.
    pub fn respond(self, status: StatusCode, body: &Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        self.reply.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(bytes))
                .unwrap(),
        );
    }

    /// Answers `200` with the request body (what an apply of a new object returns),
    /// merged with `extra` at the top level (e.g. a `status`).
    pub fn respond_echo(self, extra: Value) {
        let mut body = self.body.clone();
        if let (Some(object), Value::Object(extra)) = (body.as_object_mut(), extra) {
            object.extend(extra);
        }
        self.respond(StatusCode::OK, &body);
    }

    /// Answers with `status` and a plain-text body, as the API server does for a path
    /// no handler serves (e.g. `404 page not found` for an API group not installed).
    pub fn respond_text(self, status: StatusCode, text: &str) {
        self.reply.send_response(
            Response::builder()
                .status(status)
                .header("content-type", "text/plain; charset=utf-8")
                .body(Body::from(text.as_bytes().to_vec()))
                .unwrap(),
        );
    }

    /// Answers `404 NotFound` as the API server does.
    pub fn respond_not_found(self) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "not found", "reason": "NotFound", "code": 404});
        self.respond(StatusCode::NOT_FOUND, &status);
    }
}

/// A running scenario.
pub struct ScenarioHandle(JoinHandle<()>);

impl ScenarioHandle {
    /// Waits (at most 1 s) for the script to end, re-raising its assertion failures.
    pub async fn finish(self) {
        match tokio::time::timeout(Duration::from_secs(1), self.0).await {
            Ok(Ok(())) => {}
            Ok(Err(join_error)) => std::panic::resume_unwind(join_error.into_panic()),
            Err(_) => panic!("the scenario still expected requests when reconcile returned"),
        }
    }
}
