//! SQS errors moto cannot produce (throttling, a 500), answered by a failing loopback endpoint
//! to the real `aws-sdk-sqs` client, through [`doorbell::queue::SqsQueue`] and the ingest app:
//! each must be a 503 with `Retry-After` (the provider retries), never a 2xx, and the
//! provider's retry after the fault is enqueued.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use doorbell::catalog::StaticCatalog;
use doorbell::clock::ManualClock;
use doorbell::queue::SqsQueue;
use doorbell::testing::{self, FailingEndpoint, Reply};
use doorbell::verify::stripe;
use doorbell::{Secret, Sources};
use doorbell_ingest::{IngestState, app};
use tower::ServiceExt;

const NOW_S: i64 = 1_700_000_000;
const SECRET: &str = "whsec_test_secret";

async fn state(endpoint: &FailingEndpoint) -> IngestState {
    let sources = Sources::from_json(
        &serde_json::json!({"sources": [{"name": "stripe", "provider": "stripe", "secrets": [SECRET]}]})
            .to_string(),
    )
    .unwrap();
    let config = testing::config_for(endpoint.url()).await;
    IngestState {
        sources: Arc::new(StaticCatalog::new(sources)),
        queue: Arc::new(SqsQueue::new(
            aws_sdk_sqs::Client::new(&config),
            format!("{}/123456789012/events", endpoint.url()),
        )),
        clock: Arc::new(ManualClock::new(NOW_S * 1000)),
    }
}

async fn deliver(state: &IngestState) -> (u16, Option<String>) {
    let body = r#"{"id":"evt_sdk_fault_1","object":"event","type":"payment_intent.succeeded","created":1700000000,"data":{"object":{}}}"#;
    let req = Request::post("/webhooks/stripe")
        .header("content-type", "application/json")
        .header(
            stripe::SIGNATURE_HEADER,
            stripe::sign(&Secret::new(SECRET), NOW_S, body.as_bytes()),
        )
        .body(Body::from(body))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), retry_after)
}

#[tokio::test]
async fn throttled_send_is_503_with_retry_after_and_the_retry_is_enqueued() {
    let endpoint = FailingEndpoint::start(
        vec![Reply::json_error(
            400,
            "com.amazonaws.sqs#RequestThrottled",
            "Rate exceeded",
        )],
        Reply::json(
            200,
            serde_json::json!({"MessageId": "5fea7756-0ea4-451a-a703-a558b933e274"}),
        ),
    )
    .await;
    let st = state(&endpoint).await;
    assert_eq!(deliver(&st).await, (503, Some("5".into())));
    assert_eq!(deliver(&st).await.0, 200);
    assert_eq!(endpoint.calls(), 2);
}

#[tokio::test]
async fn an_sqs_500_is_503_never_2xx() {
    let endpoint = FailingEndpoint::start(
        vec![],
        Reply::json_error(500, "com.amazonaws.sqs#InternalError", "oops"),
    )
    .await;
    let st = state(&endpoint).await;
    assert_eq!(deliver(&st).await.0, 503);
    assert_eq!(deliver(&st).await.0, 503);
    assert_eq!(endpoint.calls(), 2);
}
