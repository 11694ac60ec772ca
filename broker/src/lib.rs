//! runnel-broker: a Kafka-compatible broker — the Kafka wire protocol over durable
//! segment storage (`runnel-storage`).
//!
//! | module         | what it holds                                                  |
//! |----------------|----------------------------------------------------------------|
//! | `config`       | flags, env vars and broker-wide defaults                       |
//! | `config_file`  | the TOML config file and the precedence of the sources         |
//! | `ops`          | status, gRPC health and admin, Prometheus metrics              |
//! | `server`       | bind, accept loop with a connection limit, shutdown order      |
//! | `connection`   | bounded framing, pipelined requests answered in order          |
//! | `sendfile`     | writing a frame of bytes and file regions (`sendfile(2)`)      |
//! | `dispatch`     | the API table; ApiVersions is generated from it                |
//! | `bounds`       | every length and count in a request checked before decoding    |
//! | `handlers`     | one file per Kafka API                                         |
//! | `context`      | `BrokerContext`: the only door to metadata, logs and limits    |
//! | `maintenance`  | retention, compaction and the flush policy in the background   |
//! | `metadata`     | the metadata log and the image it builds (KRaft-style)         |
//! | `groups`       | the group coordinator and committed offsets                    |
//! | `flusher`      | group commit: acks=all fsyncs shared across producers          |
//! | `partitions`   | hosted partition logs                                          |
//! | `topics`       | topic administration shared by several APIs                    |
//! | `topic_config` | topic configs by Kafka's names, validation, defaults           |
//! | `dynamic_config` | broker configs changed at runtime: the replication throttles |
//! | `records`      | test record batches (the broker reads records via storage)     |
//! | `error_codes`  | storage errors to Kafka error codes, in one place              |

pub mod bounds;
pub mod cluster;
pub mod config;
pub mod config_file;
pub mod connection;
pub mod context;
pub mod dispatch;
pub mod dynamic_config;
pub mod error_codes;
pub mod flusher;
mod fsync_pool;
pub mod groups;
pub mod handlers;
pub mod maintenance;
pub mod metadata;
pub mod ops;
pub mod partitions;
pub mod reassignments;
pub mod records;
pub mod replication;
pub mod sendfile;
pub mod server;
pub mod topic_config;
pub mod topics;

pub use config::BrokerConfig;
pub use server::{Broker, Stopped};
