//! `runnel-client`: Runnel's one Kafka-protocol client, used by the operator, the bench,
//! the broker's tests and (for broker-to-broker calls) the broker. It sends any request
//! of the `kafka-protocol` codec over tokio TCP and knows nothing of what the requests
//! mean: building them and reading their error codes is the caller's business.
//!
//! | module       | concept                                                              |
//! |--------------|----------------------------------------------------------------------|
//! | `frame`      | the wire framing without state: encode, bounded read, decode + correlation check |
//! | `connection` | [`Connection`]: connect with a timeout, calls, ApiVersions once, split for pipelining |
//! | `versions`   | [`ServedVersions`]: a broker's ApiVersions and the version to send    |
//! | `config`     | [`ClientConfig`]: client id, software name, timeouts, response bound  |
//! | `error`      | [`FrameError`] (one frame) and [`ClientError`] (a call, with address and API) |
//! | `test_util`  | (feature `test-util`) loopback ports for the brokers tests start      |
//!
//! ```no_run
//! # async fn example() -> Result<(), runnel_client::ClientError> {
//! use kafka_protocol::messages::MetadataRequest;
//! use runnel_client::{ClientConfig, Connection};
//!
//! let mut connection = Connection::connect("127.0.0.1:9092", &ClientConfig::new("me")).await?;
//! let version = connection.version::<MetadataRequest>(4..=12).await?;
//! let metadata = connection.call(&MetadataRequest::default(), version).await?;
//! # drop(metadata);
//! # Ok(())
//! # }
//! ```
//!
//! Only one connection to one broker: finding brokers and partition leaders from
//! Metadata is left to the callers, which each do it their own way.

mod config;
mod connection;
mod error;
#[cfg(test)]
mod fake_broker;
pub mod frame;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
mod versions;

pub use config::ClientConfig;
pub use connection::{Connection, Pending, RequestWriter, ResponseReader};
pub use error::{Api, ClientError, CodecError, FrameError};
pub use versions::ServedVersions;
