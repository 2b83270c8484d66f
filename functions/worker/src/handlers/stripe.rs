//! Stripe handlers.
//!
//! Event shapes follow Stripe's API reference ("The Event object",
//! <https://docs.stripe.com/api/events/object>, and "The PaymentIntent object",
//! <https://docs.stripe.com/api/payment_intents/object>).

use std::sync::Arc;

use doorbell::handler::{Event, Handler, HandlerOutcome};
use doorbell::store::EntityStore;
use serde::Deserialize;
use serde_json::json;

/// `payment_intent.succeeded`: marks the order paid.
///
/// The order is `data.object.metadata.order_id` (the id the shop put on the payment intent),
/// else the payment intent's id. Writes entity `("order", order_id)` with
/// `{"status":"paid","payment_intent","amount_received","currency"}` at version = the event's
/// `created` (epoch ms). A body without `data.object.id` or with non-numeric amounts is
/// rejected (it can never succeed); a store failure is retried.
#[derive(Debug, Clone)]
pub struct PaymentIntentSucceeded {
    entities: Arc<dyn EntityStore>,
}

impl PaymentIntentSucceeded {
    /// The handler, writing to `entities`.
    pub fn new(entities: Arc<dyn EntityStore>) -> Self {
        Self { entities }
    }
}

#[derive(Deserialize)]
struct StripeEvent {
    created: i64,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: PaymentIntent,
}

#[derive(Deserialize)]
struct PaymentIntent {
    id: String,
    amount_received: i64,
    currency: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

#[async_trait::async_trait]
impl Handler for PaymentIntentSucceeded {
    async fn handle(&self, event: &Event<'_>) -> HandlerOutcome {
        let ev: StripeEvent = match event.json() {
            Ok(e) => e,
            Err(e) => {
                return HandlerOutcome::Reject(format!(
                    "malformed payment_intent.succeeded: {}",
                    doorbell::redact::json_error(&e)
                ));
            }
        };
        let pi = ev.data.object;
        let order_id = pi
            .metadata
            .get("order_id")
            .cloned()
            .unwrap_or_else(|| pi.id.clone());
        let state = json!({
            "status": "paid",
            "payment_intent": pi.id,
            "amount_received": pi.amount_received,
            "currency": pi.currency,
            "event_id": event.envelope.event_id,
        });
        match self
            .entities
            .put_if_newer("order", &order_id, ev.created.saturating_mul(1000), &state)
            .await
        {
            Ok(written) => {
                tracing::info!(order_id = %order_id, written, "order marked paid");
                HandlerOutcome::Ok
            }
            Err(e) => HandlerOutcome::Retry(e.to_string()),
        }
    }
}
