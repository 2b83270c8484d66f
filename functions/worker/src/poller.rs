//! What Lambda's SQS event source mapping does, for the local pipeline and tests: receive up to
//! a batch, invoke the worker with an `SqsEvent`, delete every record not reported in
//! `batchItemFailures`. Reported records stay in the queue and come back after the visibility
//! timeout; the queue's redrive policy moves them to the dead-letter queue after
//! `maxReceiveCount` receives.

use aws_lambda_events::event::sqs::SqsEvent;
use doorbell::queue::{EventQueue, QueueError};

use crate::{RecordReport, Worker};

/// Where the records say they came from.
#[derive(Debug, Clone)]
pub struct EventSource {
    /// The queue ARN put in each record's `eventSourceARN`.
    pub arn: String,
    /// The region put in each record's `awsRegion`.
    pub region: String,
    /// Records per invocation (1–10).
    pub batch_size: u32,
}

/// Receives one batch, runs it, deletes what succeeded. Returns the reports (empty when the
/// queue had nothing visible).
///
/// # Errors
/// [`QueueError`] from receive or delete; a failed delete leaves the message to come back,
/// where the event store acknowledges it as a duplicate.
pub async fn poll_once(
    queue: &dyn EventQueue,
    worker: &Worker,
    source: &EventSource,
    deadline_ms: Option<i64>,
) -> Result<Vec<RecordReport>, QueueError> {
    let messages = queue.receive(source.batch_size).await?;
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| m.to_sqs_message(&source.arn, &source.region))
        .collect();
    let (response, reports) = worker.handle_detailed(event, deadline_ms).await;
    let done: Vec<&str> = messages
        .iter()
        .filter(|m| {
            !response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == m.message_id)
        })
        .map(|m| m.receipt_handle.as_str())
        .collect();
    queue.delete_batch(&done).await?;
    Ok(reports)
}
