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
                tracing::info!(order_id = %order_id, write = ?written, "order marked paid");
                HandlerOutcome::Ok
            }
            Err(e) => HandlerOutcome::Retry(e.to_string()),
        }
    }
}

/// `customer.subscription.created`, `.updated`, `.paused`, `.resumed` and `.deleted`: keeps the
/// subscription's state, in the order the events happened whatever order they arrive in.
///
/// Writes entity `("subscription", data.object.id)` with
/// `{"status","customer","cancel_at_period_end","price_ids","event_id","event_type"}` through
/// the ordering guard ([`EntityStore::put_if_newer`]): version = the event's `created` (epoch
/// seconds, from Stripe's Event object) × 1000, plus 1 for every type but `created`, so an
/// update in the same second as the creation wins over it. `customer.subscription.deleted`
/// ("Occurs whenever a customer's subscription ends",
/// <https://docs.stripe.com/api/events/types#event_types-customer.subscription.deleted>) is a
/// tombstone ([`EntityStore::delete`]): no update, earlier or later, brings the subscription
/// back. Two updates within the same second keep the first one stored (Stripe's timestamps have
/// one-second resolution; see <https://docs.stripe.com/webhooks#event-ordering>).
///
/// A body without `data.object.id` is rejected (it can never succeed); a store failure is
/// retried.
#[derive(Debug, Clone)]
pub struct SubscriptionChanged {
    entities: Arc<dyn EntityStore>,
}

impl SubscriptionChanged {
    /// The handler, writing to `entities`.
    pub fn new(entities: Arc<dyn EntityStore>) -> Self {
        Self { entities }
    }

    /// The event types it handles.
    pub const EVENT_TYPES: [&'static str; 5] = [
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "customer.subscription.deleted",
    ];
}

#[derive(Deserialize)]
struct SubscriptionEvent {
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: SubscriptionData,
}

#[derive(Deserialize)]
struct SubscriptionData {
    object: Subscription,
}

#[derive(Deserialize)]
struct Subscription {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    customer: Option<serde_json::Value>,
    #[serde(default)]
    cancel_at_period_end: Option<bool>,
    #[serde(default)]
    items: Option<Items>,
}

#[derive(Deserialize)]
struct Items {
    #[serde(default)]
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    price: Option<Price>,
}

#[derive(Deserialize)]
struct Price {
    id: String,
}

#[async_trait::async_trait]
impl Handler for SubscriptionChanged {
    async fn handle(&self, event: &Event<'_>) -> HandlerOutcome {
        let ev: SubscriptionEvent = match event.json() {
            Ok(e) => e,
            Err(e) => {
                return HandlerOutcome::Reject(format!(
                    "malformed subscription event: {}",
                    doorbell::redact::json_error(&e)
                ));
            }
        };
        let sub = ev.data.object;
        let customer = match sub.customer {
            Some(serde_json::Value::String(c)) => Some(c),
            Some(serde_json::Value::Object(o)) => {
                o.get("id").and_then(|v| v.as_str()).map(str::to_owned)
            }
            _ => None,
        };
        let price_ids: Vec<String> = sub
            .items
            .map(|i| {
                i.data
                    .into_iter()
                    .filter_map(|it| it.price.map(|p| p.id))
                    .collect()
            })
            .unwrap_or_default();
        let state = json!({
            "status": sub.status,
            "customer": customer,
            "cancel_at_period_end": sub.cancel_at_period_end,
            "price_ids": price_ids,
            "event_id": event.envelope.event_id,
            "event_type": ev.kind,
        });
        let base = ev.created.saturating_mul(1000);
        let result = if ev.kind == "customer.subscription.deleted" {
            self.entities
                .delete("subscription", &sub.id, base.saturating_add(1), &state)
                .await
        } else {
            let rank = i64::from(ev.kind != "customer.subscription.created");
            self.entities
                .put_if_newer("subscription", &sub.id, base.saturating_add(rank), &state)
                .await
        };
        match result {
            Ok(write) => {
                tracing::info!(subscription = %sub.id, event_type = %ev.kind, write = ?write, "subscription state");
                HandlerOutcome::Ok
            }
            Err(e) => HandlerOutcome::Retry(e.to_string()),
        }
    }
}
