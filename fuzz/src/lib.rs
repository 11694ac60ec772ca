//! runnel-fuzz: a mutation fuzzer over the broker's whole request path, in-process and on
//! stable Rust — frame → request header → body decode → handler → response encode —
//! seeded from a corpus of requests that real clients sent.
//!
//! | module       | what it holds                                                        |
//! |--------------|----------------------------------------------------------------------|
//! | `corpus`     | the corpus files (`<ApiName>-v<version>-<n>.bin`) and their names      |
//! | `mutate`     | the mutation engine: lengths and counts, bits, bytes, splices, versions |
//! | `harness`    | a `BrokerContext` on a temporary data dir, one frame in, one outcome out |
//! | `check`      | what every answer must satisfy: size prefix, correlation id, decodable |
//! | `stats`      | outcomes per API, merged across worker processes                       |
//! | `worker`     | the fuzzing loop: epochs, checkpoints, tracing of each frame           |
//! | `supervisor` | runs workers as child processes and pins each crash to its frame       |
//! | `derive`     | completes the captured corpus to every served API version              |
//!
//! Every frame is a pure function of `(seed, iteration)`: the supervisor regenerates any
//! iteration without replaying the ones before it. The broker's state does depend on
//! earlier frames, so the data dir is recreated every `reset_every` iterations (an epoch)
//! and a crash is replayed from the start of its epoch.

pub mod check;
pub mod corpus;
pub mod derive;
pub mod harness;
pub mod mutate;
pub mod stats;
pub mod supervisor;
pub mod worker;
