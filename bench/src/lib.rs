//! # doorbell-bench
//!
//! Measurement tools behind `scripts/bench` and `BENCHMARKS.md` (the criterion benchmarks live
//! in `shared/benches` (verification) and `bench/benches` (the ingest request, worker batches)):
//!
//! - [`stub`]: a loopback SQS/DynamoDB stub that answers at once and counts requests;
//! - [`cpu`]: CPU per webhook for Doorbell's ingest, measured as the Python and Node peers
//!   (`bench/peers/`) measure theirs;
//! - [`runtime_api`]: a local Lambda Runtime API that measures a `bootstrap`'s cold start;
//! - [`load`]: a bounded loopback load for `doorbell dev`'s throughput.

pub mod cpu;
pub mod load;
pub mod runtime_api;
pub mod stub;
