//! [`ClientConfig`]: who the client says it is and the limits of its connections.

use std::time::Duration;

/// Identity and limits of the connections a client makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The `client.id` in every request header (brokers log it and quota by it).
    pub client_id: String,
    /// `client_software_name` of ApiVersions v3+; Kafka requires letters, digits, `.`
    /// and `-`, starting and ending with a letter or digit.
    pub software_name: String,
    /// `client_software_version` of ApiVersions v3+ (same character rules).
    pub software_version: String,
    /// Limit for establishing the TCP connection.
    pub connect_timeout: Duration,
    /// Limit for one request: written and answered for a call, written for a pipelined
    /// send, answered for a pipelined receive.
    pub request_timeout: Duration,
    /// Largest response frame accepted; a larger size prefix fails the call before
    /// anything is allocated.
    pub max_response_bytes: u32,
}

impl ClientConfig {
    /// Defaults, with `name` as both client id and software name.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        ClientConfig {
            client_id: name.clone(),
            software_name: name,
            software_version: env!("CARGO_PKG_VERSION").to_string(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Default for ClientConfig {
    /// [`ClientConfig::new`]`("runnel-client")`: 5 s to connect, 30 s per request,
    /// responses up to 16 MiB.
    fn default() -> Self {
        Self::new("runnel-client")
    }
}
