//! # doorbell
//!
//! The library behind Doorbell, a webhook receiver for AWS. It holds everything the two Lambda
//! functions and the `doorbell` CLI share:
//!
//! - [`verify`]: one module per provider scheme (Stripe, GitHub), each checking the provider's
//!   HMAC signature and timestamp over the exact raw body bytes and reading the event id and type;
//! - [`envelope`]: the versioned JSON message that travels on the queue;
//! - [`queue`]: the [`queue::EventQueue`] port, with [`queue::SqsQueue`] (Amazon SQS) and
//!   [`queue::MemoryQueue`] (in-process, with SQS's visibility timeout, receive count and redrive);
//! - [`payload`]: the claim-check store (S3) for envelopes larger than the queue's limit;
//! - [`sqlite`]: the local pipeline's one database file, shared by its event store, queues and
//!   claim-check store ([`queue::SqliteQueue`], [`payload::SqlitePayloadStore`]);
//! - [`store`]: the [`store::EventStore`] port (idempotency claims, leases, status), with
//!   [`store::DynamoDbEventStore`] and [`store::SqliteEventStore`], and the [`store::EntityStore`]
//!   port handlers use to keep per-entity state newest-wins;
//! - [`handler`]: the [`handler::Handler`] trait, its outcomes and the registry keyed by
//!   (source, event type);
//! - [`config`]: sources (endpoints) and their secrets;
//! - [`archive`]: every verified envelope, kept for a retention period (the [`archive::Archive`]
//!   port, SQLite locally, Firehose and S3 in AWS);
//! - [`ops`]: the operations layer behind `doorbell events`, `dlq`, `replay` and `status`;
//! - [`metrics`]: CloudWatch Embedded Metric Format documents and the [`metrics::MetricsSink`]
//!   port they go to (stdout in Lambda).
//!
//! Time always comes in as a parameter or through [`clock::Clock`]; nothing deep in the logic
//! reads the system clock.

pub mod archive;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod envelope;
pub mod handler;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod payload;
pub mod queue;
pub mod redact;
pub mod secret;
pub mod sqlite;
pub mod store;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod verify;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Provider, SourceConfig, Sources};
pub use envelope::Envelope;
pub use secret::Secret;
