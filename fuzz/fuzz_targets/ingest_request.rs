//! The whole ingest request path (routing, body limit, verification, envelope, enqueue) on
//! arbitrary requests: no panic, and a 2xx only with a message on the queue.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use axum::body::Body;
use doorbell::Sources;
use doorbell::catalog::StaticCatalog;
use doorbell::clock::ManualClock;
use doorbell::queue::{MemoryQueue, MemoryQueueConfig};
use doorbell_ingest::{IngestState, app};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    path: &'a str,
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let queue = Arc::new(MemoryQueue::new("q", MemoryQueueConfig::default(), clock.clone()));
        let sources = Sources::from_json(
            r#"{"sources":[{"name":"stripe","provider":"stripe","secrets":["whsec_x"]},{"name":"github","provider":"github","secrets":["g"]},{"name":"slack","provider":"slack","secrets":["s"]}]}"#,
        )
        .unwrap();
        let state = IngestState { sources: Arc::new(StaticCatalog::new(sources)), queue: queue.clone(), clock };
        let mut req = http::Request::post(format!("/webhooks/{}", input.path));
        for (k, v) in &input.headers {
            req = req.header(*k, *v);
        }
        let Ok(req) = req.body(Body::from(input.body.to_vec())) else { return };
        let resp = app(state).oneshot(req).await.unwrap();
        if resp.status().is_success() {
            assert!(!queue.is_empty(), "2xx without an enqueue");
        }
    });
});
