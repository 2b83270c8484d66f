//! Stripe handlers.
//!
//! Event shapes follow Stripe's API reference ("The Event object",
//! <https://docs.stripe.com/api/events/object>, and "The PaymentIntent object",
//! <https://docs.stripe.com/api/payment_intents/object>).

use std::sync::Arc;

use doorbell::handler::{Event, Handler, HandlerOutcome};
use doorbell::store::EntityStore;
use serde_json::json;

use super::{Doc, FieldError, parse_body};

/// `payment_intent.succeeded`: marks the order paid.
///
/// The order is `data.object.metadata.order_id` (the id the shop put on the payment intent),
/// else the payment intent's id. Writes entity `("order", order_id)` with
/// `{"status":"paid","payment_intent","amount_received","currency"}` at version = the event's
/// `created` (epoch ms). A body without `created`, `data.object.id`, `amount_received` or
/// `currency`, or with one of another type, is rejected (it can never succeed) with a reason
/// naming the field (`payment_intent.succeeded: missing field data.object.amount_received`);
/// a store failure is retried.
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

/// The fields of a `payment_intent.succeeded` event the handler needs.
struct PaymentIntent<'a> {
    created: i64,
    id: &'a str,
    amount_received: i64,
    currency: &'a str,
    order_id: Option<&'a str>,
}

impl<'a> PaymentIntent<'a> {
    fn read(doc: &Doc<'a>) -> Result<Self, FieldError> {
        Ok(Self {
            created: doc.i64("created")?,
            id: doc.str("data.object.id")?,
            amount_received: doc.i64("data.object.amount_received")?,
            currency: doc.str("data.object.currency")?,
            order_id: doc.opt_str("data.object.metadata.order_id")?,
        })
    }
}

#[async_trait::async_trait]
impl Handler for PaymentIntentSucceeded {
    async fn handle(&self, event: &Event<'_>) -> HandlerOutcome {
        let body = match parse_body(event) {
            Ok(b) => b,
            Err(e) => return e.reject(event),
        };
        let pi = match PaymentIntent::read(&Doc::root(&body)) {
            Ok(pi) => pi,
            Err(e) => return e.reject(event),
        };
        let order_id = pi.order_id.unwrap_or(pi.id);
        let state = json!({
            "status": "paid",
            "payment_intent": pi.id,
            "amount_received": pi.amount_received,
            "currency": pi.currency,
            "event_id": event.envelope.event_id,
        });
        match self
            .entities
            .put_if_newer("order", order_id, pi.created.saturating_mul(1000), &state)
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
/// A body without `type`, `created` or `data.object.id`, or with a field of another type, is
/// rejected (it can never succeed) with a reason naming the field; a store failure is retried.
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

/// The fields of a `customer.subscription.*` event the handler keeps.
struct Subscription<'a> {
    kind: &'a str,
    created: i64,
    id: &'a str,
    status: Option<&'a str>,
    /// The customer's id: `data.object.customer` is the id, or the expanded object.
    customer: Option<&'a str>,
    cancel_at_period_end: Option<bool>,
    price_ids: Vec<&'a str>,
}

impl<'a> Subscription<'a> {
    fn read(doc: &Doc<'a>) -> Result<Self, FieldError> {
        let customer = match doc.opt_object("data.object.customer") {
            Ok(Some(expanded)) => expanded.opt_str("id")?,
            Ok(None) => None,
            Err(_) => doc.opt_str("data.object.customer")?,
        };
        let mut price_ids = Vec::new();
        for item in doc.list("data.object.items.data")? {
            if let Some(price) = item.opt_object("price")? {
                price_ids.push(price.str("id")?);
            }
        }
        Ok(Self {
            kind: doc.str("type")?,
            created: doc.i64("created")?,
            id: doc.str("data.object.id")?,
            status: doc.opt_str("data.object.status")?,
            customer,
            cancel_at_period_end: doc.opt_bool("data.object.cancel_at_period_end")?,
            price_ids,
        })
    }
}

#[async_trait::async_trait]
impl Handler for SubscriptionChanged {
    async fn handle(&self, event: &Event<'_>) -> HandlerOutcome {
        let body = match parse_body(event) {
            Ok(b) => b,
            Err(e) => return e.reject(event),
        };
        let sub = match Subscription::read(&Doc::root(&body)) {
            Ok(s) => s,
            Err(e) => return e.reject(event),
        };
        let state = json!({
            "status": sub.status,
            "customer": sub.customer,
            "cancel_at_period_end": sub.cancel_at_period_end,
            "price_ids": sub.price_ids,
            "event_id": event.envelope.event_id,
            "event_type": sub.kind,
        });
        let base = sub.created.saturating_mul(1000);
        let result = if sub.kind == "customer.subscription.deleted" {
            self.entities
                .delete("subscription", sub.id, base.saturating_add(1), &state)
                .await
        } else {
            let rank = i64::from(sub.kind != "customer.subscription.created");
            self.entities
                .put_if_newer("subscription", sub.id, base.saturating_add(rank), &state)
                .await
        };
        match result {
            Ok(write) => {
                tracing::info!(subscription = %sub.id, event_type = %sub.kind, write = ?write, "subscription state");
                HandlerOutcome::Ok
            }
            Err(e) => HandlerOutcome::Retry(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use doorbell::Provider;
    use doorbell::handler::{Event, Handler, HandlerOutcome};
    use doorbell::store::SqliteEventStore;
    use serde_json::json;

    use super::*;
    use crate::handlers::test_envelope;

    async fn run(handler: &dyn Handler, kind: &str, body: serde_json::Value) -> HandlerOutcome {
        let body = body.to_string();
        let envelope = test_envelope(Provider::Stripe, kind, &body);
        handler
            .handle(&Event {
                envelope: &envelope,
                body: body.as_bytes(),
            })
            .await
    }

    fn payment_intent() -> serde_json::Value {
        json!({"id": "evt_FAKE0001", "type": "payment_intent.succeeded", "created": 1_700_000_000,
            "data": {"object": {"id": "pi_FAKE", "amount_received": 2000, "currency": "usd",
                "metadata": {"order_id": "ord_1"}}}})
    }

    #[tokio::test]
    async fn handler_error_names_the_missing_field() {
        let store = Arc::new(SqliteEventStore::in_memory().unwrap());
        let h = PaymentIntentSucceeded::new(store.clone());
        let kind = "payment_intent.succeeded";
        assert_eq!(run(&h, kind, payment_intent()).await, HandlerOutcome::Ok);

        let mut body = payment_intent();
        body["data"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("amount_received");
        assert_eq!(
            run(&h, kind, body).await,
            HandlerOutcome::Reject(
                "payment_intent.succeeded: missing field data.object.amount_received".into()
            )
        );

        let mut body = payment_intent();
        body["data"]["object"]["amount_received"] = json!("2000 TOPSECRET");
        assert_eq!(
            run(&h, kind, body).await,
            HandlerOutcome::Reject(
                "payment_intent.succeeded: field data.object.amount_received is a string, expected a whole number"
                    .into()
            )
        );

        let mut body = payment_intent();
        body.as_object_mut().unwrap().remove("created");
        assert_eq!(
            run(&h, kind, body).await,
            HandlerOutcome::Reject("payment_intent.succeeded: missing field created".into())
        );

        let HandlerOutcome::Reject(reason) = run(&h, kind, json!("not an object TOPSECRET")).await
        else {
            panic!("a string body is rejected");
        };
        assert_eq!(
            reason,
            "payment_intent.succeeded: the body is a string, expected an object"
        );
    }

    #[tokio::test]
    async fn subscription_error_names_the_field_in_its_list() {
        let store = Arc::new(SqliteEventStore::in_memory().unwrap());
        let h = SubscriptionChanged::new(store);
        let kind = "customer.subscription.updated";
        let body = |items: serde_json::Value| {
            json!({"type": kind, "created": 1_700_000_000, "data": {"object": {
                "id": "sub_FAKE", "status": "active", "customer": {"id": "cus_FAKE"},
                "items": {"data": items}}}})
        };
        assert_eq!(
            run(&h, kind, body(json!([{"price": {"id": "price_1"}}]))).await,
            HandlerOutcome::Ok
        );
        assert_eq!(
            run(
                &h,
                kind,
                body(json!([{"price": {"id": "price_1"}}, {"price": {}}]))
            )
            .await,
            HandlerOutcome::Reject(
                "customer.subscription.updated: missing field data.object.items.data[1].price.id"
                    .into()
            )
        );
        let mut no_id = body(json!([]));
        no_id["data"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("id");
        assert_eq!(
            run(&h, kind, no_id).await,
            HandlerOutcome::Reject(
                "customer.subscription.updated: missing field data.object.id".into()
            )
        );
    }
}
