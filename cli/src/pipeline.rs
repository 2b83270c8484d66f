//! The whole pipeline in one process: the ingest app, a queue, the worker, and a poller doing
//! the SQS event source mapping's job. With [`doorbell::queue::MemoryQueue`] and
//! [`doorbell::store::SqliteEventStore`] it needs no AWS; with [`doorbell::queue::SqsQueue`] and
//! [`doorbell::store::DynamoDbEventStore`] it runs against SQS and DynamoDB (or an emulator).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use doorbell::Sources;
use doorbell::catalog::{SourceCatalog, StaticCatalog};
use doorbell::clock::Clock;
use doorbell::handler::HandlerRegistry;
use doorbell::queue::{EventQueue, QueueError};
use doorbell::store::{EntityStore, EventStore};
use doorbell_ingest::IngestState;
use doorbell_worker::poller::{EventSource, poll_once};
use doorbell_worker::{RecordReport, Worker, WorkerConfig, handlers};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The assembled pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The ingest app.
    pub router: Router,
    /// The events queue.
    pub queue: Arc<dyn EventQueue>,
    /// The worker.
    pub worker: Worker,
    /// What the poller puts in each record.
    pub event_source: EventSource,
    /// The pipeline's clock.
    pub clock: Arc<dyn Clock>,
    /// How long a polled batch may run, **milliseconds**: its deadline, hence its leases (keep
    /// it at most the queue's visibility timeout). Default 30,000.
    pub batch_timeout_ms: i64,
}

/// A response from [`Pipeline::post`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Body text.
    pub body: String,
}

impl Pipeline {
    /// Assembles a pipeline whose worker runs the shipped handlers for every source.
    pub fn new(
        sources: Sources,
        queue: Arc<dyn EventQueue>,
        store: Arc<dyn EventStore>,
        entities: Arc<dyn EntityStore>,
        clock: Arc<dyn Clock>,
        event_source: EventSource,
        worker_config: WorkerConfig,
    ) -> Self {
        let registry = handlers::default_registry(
            sources.iter().map(|s| (s.name.as_str(), s.provider)),
            entities,
        );
        Self::with_handlers(
            Arc::new(StaticCatalog::new(sources)),
            queue,
            store,
            registry,
            clock,
            event_source,
            worker_config,
        )
    }

    /// Assembles a pipeline whose ingest serves `sources` and whose worker runs `handlers`.
    pub fn with_handlers(
        sources: Arc<dyn SourceCatalog>,
        queue: Arc<dyn EventQueue>,
        store: Arc<dyn EventStore>,
        handlers: HandlerRegistry,
        clock: Arc<dyn Clock>,
        event_source: EventSource,
        worker_config: WorkerConfig,
    ) -> Self {
        let worker = Worker::new(store, handlers, clock.clone(), worker_config);
        let router = doorbell_ingest::app(IngestState {
            sources,
            queue: queue.clone(),
            clock: clock.clone(),
        });
        Self {
            router,
            queue,
            worker,
            event_source,
            clock,
            batch_timeout_ms: 30_000,
        }
    }

    /// Sends one HTTP request through the ingest app, in process.
    pub async fn post(&self, path: &str, headers: &[(String, String)], body: Vec<u8>) -> Reply {
        let mut req = Request::post(path);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = match req.body(Body::from(body)) {
            Ok(r) => r,
            Err(_) => {
                return Reply {
                    status: StatusCode::BAD_REQUEST,
                    body: "invalid request".into(),
                };
            }
        };
        let resp = match self.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Reply {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Receives and processes one batch; the reports are empty when nothing was visible.
    ///
    /// # Errors
    /// [`QueueError`] from the queue.
    pub async fn poll_once(&self) -> Result<Vec<RecordReport>, QueueError> {
        let deadline = self.clock.now_ms() + self.batch_timeout_ms;
        poll_once(
            self.queue.as_ref(),
            &self.worker,
            &self.event_source,
            Some(deadline),
        )
        .await
    }
}
