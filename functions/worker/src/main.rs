//! Lambda entry point: wiring only. See the library for the contract.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use doorbell::SystemClock;
use doorbell::archive::{AwsArchive, FirehoseArchive};
use doorbell::metrics::EmfStdout;
use doorbell::payload::S3PayloadStore;
use doorbell::queue::SqsQueue;
use doorbell::store::DynamoDbEventStore;
use doorbell_worker::config::WorkerSettings;
use doorbell_worker::{Worker, handlers};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    doorbell::logging::init_json();
    let settings = WorkerSettings::from_env()?;
    let aws = aws_config::load_from_env().await;
    let store = Arc::new(DynamoDbEventStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        settings.table,
    ));
    let registry = handlers::default_registry(
        settings.sources.iter().map(|(n, p)| (n.as_str(), *p)),
        store.clone(),
    );
    let mut worker = Worker::new(store, registry, Arc::new(SystemClock), settings.worker)
        .with_metrics(Arc::new(EmfStdout));
    if let Some(url) = settings.dead_letter_queue_url {
        worker = worker
            .with_dead_letter_queue(Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&aws), url)));
    }
    if let Some(bucket) = settings.payload_bucket {
        worker = worker.with_payload_store(Arc::new(S3PayloadStore::from_conf(&aws, bucket)));
    }
    if let Some(stream) = settings.archive_stream {
        let writer = FirehoseArchive::for_stack(&aws, stream, settings.archive_bucket);
        worker = worker.with_archive(Arc::new(AwsArchive {
            writer: Some(writer),
            reader: None,
        }));
    }
    let worker = &worker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = i64::try_from(event.context.deadline).ok();
        Ok::<SqsBatchResponse, Error>(worker.handle(event.payload, deadline).await)
    }))
    .await
}
