//! Secret rotation without a redeploy, against Secrets Manager on a moto server
//! (`./scripts/test` starts it): ingest picks up a rotated secret after the cache TTL, accepts
//! old and new while both are listed, and keeps serving when Secrets Manager is unreachable.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use doorbell::catalog::{CatalogError, SecretsManagerCatalog, SourceCatalog};
use doorbell::clock::ManualClock;
use doorbell::queue::{MemoryQueue, MemoryQueueConfig};
use doorbell::verify::stripe;
use doorbell::{Secret, testing};
use doorbell_ingest::{IngestState, app};
use tower::ServiceExt;

const NOW_S: i64 = 1_700_000_000;
const SETTINGS: &str = r#"{"sources":[{"name":"stripe","provider":"stripe"}]}"#;
const BODY: &str = r#"{"id":"evt_rot_1","type":"invoice.paid","created":1700000000}"#;

async fn post(state: &IngestState, secret: &str, now_s: i64) -> u16 {
    let sig = stripe::sign(&Secret::new(secret), now_s, BODY.as_bytes());
    let req = Request::post("/webhooks/stripe")
        .header("stripe-signature", sig)
        .body(Body::from(BODY))
        .unwrap();
    app(state.clone())
        .oneshot(req)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn rotated_secret_is_picked_up_after_the_ttl_without_redeploy() {
    let config = testing::sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    let name = testing::unique("doorbell-secrets");
    let arn = sm
        .create_secret()
        .name(&name)
        .secret_string(r#"{"stripe":["whsec_old"]}"#)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();

    let clock = ManualClock::new(NOW_S * 1000);
    let catalog = Arc::new(SecretsManagerCatalog::new(
        sm.clone(),
        &arn,
        SETTINGS,
        300,
        Arc::new(clock.clone()),
    ));
    let queue = Arc::new(MemoryQueue::new(
        "q",
        MemoryQueueConfig::default(),
        Arc::new(clock.clone()),
    ));
    let state = IngestState {
        sources: catalog.clone(),
        queue: queue.clone(),
        clock: Arc::new(clock.clone()),
    };

    assert_eq!(post(&state, "whsec_old", NOW_S).await, 200);
    assert_eq!(post(&state, "whsec_new", NOW_S).await, 401);

    // Rotate: the new secret first, the old one kept while providers switch.
    sm.put_secret_value()
        .secret_id(&arn)
        .secret_string(r#"{"stripe":["whsec_new","whsec_old"]}"#)
        .send()
        .await
        .unwrap();
    clock.advance_ms(299_000);
    assert_eq!(
        post(&state, "whsec_new", NOW_S + 299).await,
        401,
        "still cached"
    );
    clock.advance_ms(1_000);
    assert_eq!(
        post(&state, "whsec_new", NOW_S + 300).await,
        200,
        "refreshed after the TTL"
    );
    assert_eq!(
        post(&state, "whsec_old", NOW_S + 300).await,
        200,
        "old secret still accepted"
    );

    // Secrets Manager gone: the last good sources stay in use.
    sm.delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    clock.advance_ms(301_000);
    assert_eq!(post(&state, "whsec_new", NOW_S + 601).await, 200);
    assert_eq!(queue.len(), 4);
}

#[tokio::test]
async fn no_secret_at_cold_start_answers_503_so_the_provider_retries() {
    let config = testing::sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    let clock = ManualClock::new(NOW_S * 1000);
    let catalog = Arc::new(SecretsManagerCatalog::new(
        sm,
        testing::unique("missing-secret"),
        SETTINGS,
        300,
        Arc::new(clock.clone()),
    ));
    assert!(matches!(
        catalog.sources().await,
        Err(CatalogError::Fetch(_))
    ));
    let queue = Arc::new(MemoryQueue::new(
        "q",
        MemoryQueueConfig::default(),
        Arc::new(clock.clone()),
    ));
    let state = IngestState {
        sources: catalog,
        queue: queue.clone(),
        clock: Arc::new(clock),
    };
    assert_eq!(post(&state, "whsec_old", NOW_S).await, 503);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn a_secret_without_the_source_is_a_config_error_that_never_echoes_values() {
    let config = testing::sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    let name = testing::unique("doorbell-secrets");
    sm.create_secret()
        .name(&name)
        .secret_string(r#"{"github":"whsec_LEAKME"}"#)
        .send()
        .await
        .unwrap();
    let catalog =
        SecretsManagerCatalog::new(sm, &name, SETTINGS, 300, Arc::new(ManualClock::new(0)));
    let e = catalog.sources().await.unwrap_err();
    assert!(matches!(e, CatalogError::Config(_)));
    assert!(!format!("{e} {e:?} {catalog:?}").contains("LEAKME"));
}
