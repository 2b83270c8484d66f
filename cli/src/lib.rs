//! # doorbell-cli
//!
//! The `doorbell` command's library: the local pipeline ([`pipeline`]) that runs the very ingest
//! app and worker that run in Lambda, the bundled sample deliveries ([`samples`]), and the
//! `demo` (and `demo --faults`, [`faults`]) and `dev` commands, and the operations commands
//! (`events`, `dlq`, `replay`, `status`: [`ops`]).

pub mod demo;
pub mod dev;
pub mod events;
pub mod faults;
pub mod invoke;
pub mod ops;
pub mod pipeline;
pub mod samples;
pub mod serve;
