//! `runnel-bench`: a load generator that speaks the Kafka protocol (the `kafka-protocol`
//! codec over `runnel_client` connections) to any Kafka-compatible broker, and reports
//! produce and consume throughput, produce latency (request sent → acknowledged, per
//! batch) and end-to-end latency (record created → consumed), with errors seen; or, with
//! `--read-back` / `--consume-only`, the throughput of a catch-up read of records already
//! in the log.
//!
//! Client flow: ApiVersions (highest common version per API) → Metadata (partitions and
//! leaders) → optional CreateTopics → consumers' ListOffsets → pipelined Produce on one
//! connection per producer and leader, Fetch on one connection per consumer and leader.
//! In a catch-up run, consumers' ListOffsets and Fetch come after producing (or alone).
//! A `--metadata` run sends only Metadata (and CreateTopics), to the bootstrap broker.
//!
//! Two more binaries share the crate: `runnel-failover` (kill → first acknowledged
//! acks=all produce, driven by a script) and `runnel-disk-ceiling` (the disk's own
//! write + fdatasync ceiling, to compare acks=all produce with).
//!
//! Module map:
//!
//! | module            | concept                                                        |
//! |-------------------|----------------------------------------------------------------|
//! | `config`          | flags, validation, derived plan                                |
//! | `error`           | the crate's error type                                         |
//! | `versions`        | the API versions the bench speaks and the run's choice         |
//! | `cluster`         | Metadata, CreateTopics, leader addresses and the host policy   |
//! | `payload`         | record values carrying the send time; the run clock            |
//! | `pacer`           | `--rate` pacing with linger                                    |
//! | `producer`        | one producer connection: batches, in-flight bound, acks        |
//! | `consumer`        | one consumer connection: start offsets, fetch, decode          |
//! | `stats`           | counters, histograms, error counts                             |
//! | `report`          | percentiles, throughput, text and JSON                         |
//! | `runner`          | one run, phase by phase, per mode                              |
//! | `metadata`        | a `--metadata` run: Metadata requests back to back             |
//! | `metadata_report` | its answers' shape, requests/s, latency, text and JSON         |
//! | `failover`        | `runnel-failover`: settings and the control line protocol      |
//! | `failover_producer` | its idempotent acks=all producer and the kill timing         |
//! | `failover_metadata` | leaders, ISR and broker addresses from any live broker       |
//! | `failover_report` | per-kill results, p50/p90/max, text and JSON                   |
//! | `disk_ceiling`    | `runnel-disk-ceiling`: a write + fdatasync loop, MB/s, p50/p99 |

pub mod cluster;
pub mod config;
pub mod consumer;
pub mod disk_ceiling;
pub mod error;
pub mod failover;
pub mod failover_metadata;
pub mod failover_producer;
pub mod failover_report;
pub mod metadata;
pub mod metadata_report;
pub mod pacer;
pub mod payload;
pub mod producer;
pub mod report;
pub mod runner;
pub mod stats;
pub mod versions;

pub use config::BenchConfig;
pub use error::BenchError;
pub use report::Report;
pub use runner::run;
