//! A real `runnel-broker` process for tests, killed when the guard drops.
//!
//! The binary is `$RUNNEL_BROKER_BIN`, else `<workspace>/target/debug/runnel-broker`;
//! build it with `cargo build -p runnel-broker`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kafka::{TcpAdminClient, TcpAdminFactory};

/// A broker on `127.0.0.1:<free port>` with its own data directory.
pub struct TestBroker {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// The gRPC health and admin listener, `127.0.0.1:<port>`.
    pub admin_address: String,
    _data: tempfile::TempDir,
}

impl TestBroker {
    /// Starts a broker and waits (at most 20 s) until it answers ApiVersions.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`TestBroker::start`] with `extra` arguments.
    pub async fn start_with(extra: &[String]) -> Self {
        let bin = std::env::var_os("RUNNEL_BROKER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/runnel-broker")
            });
        assert!(
            bin.is_file(),
            "runnel-broker binary not found at {}: build it first with `cargo build -p runnel-broker` \
             (or point RUNNEL_BROKER_BIN at one)",
            bin.display()
        );
        let address = format!("127.0.0.1:{}", free_port());
        let admin_address = format!("127.0.0.1:{}", free_port());
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(&bin)
            .arg("--listen")
            .arg(&address)
            .arg("--health-listen")
            .arg(&admin_address)
            .arg("--data-dir")
            .arg(data.path())
            .arg("--group-initial-rebalance-delay-ms")
            .arg("0")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let broker = Self {
            child,
            address,
            admin_address,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match TcpAdminClient::connect(&broker.address, &TcpAdminFactory::default().config).await
            {
                Ok(_) => return broker,
                Err(e) if Instant::now() > deadline => {
                    panic!("the broker at {} did not come up: {e}", broker.address)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// A fresh admin client on this broker.
    pub async fn admin(&self) -> TcpAdminClient {
        TcpAdminClient::connect(&self.address, &TcpAdminFactory::default().config)
            .await
            .unwrap()
    }
}

/// A port nothing listens on now and that no other test of this binary is given.
pub fn free_port() -> u16 {
    runnel_client::test_util::free_port().unwrap()
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
