//! The handlers Doorbell ships, one module per provider, and [`default_registry`], which
//! registers them for every configured source of that provider.
//!
//! They keep their state through [`doorbell::store::EntityStore`] (the ordering guard),
//! newest-wins on the event's own time, so a late older delivery never overwrites newer state
//! and a deletion stays deleted.

pub mod github;
pub mod stripe;

use std::sync::Arc;

use doorbell::Provider;
use doorbell::handler::HandlerRegistry;
use doorbell::store::EntityStore;

/// Registers the shipped handlers for each `(source, provider)`:
/// Stripe `payment_intent.succeeded` → [`stripe::PaymentIntentSucceeded`], Stripe
/// `customer.subscription.*` → [`stripe::SubscriptionChanged`];
/// GitHub `push` → [`github::Push`].
pub fn default_registry<'a>(
    sources: impl IntoIterator<Item = (&'a str, Provider)>,
    entities: Arc<dyn EntityStore>,
) -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    for (name, provider) in sources {
        match provider {
            Provider::Stripe => {
                registry.register(
                    name,
                    "payment_intent.succeeded",
                    Arc::new(stripe::PaymentIntentSucceeded::new(entities.clone())),
                );
                let subscriptions = Arc::new(stripe::SubscriptionChanged::new(entities.clone()));
                for t in stripe::SubscriptionChanged::EVENT_TYPES {
                    registry.register(name, t, subscriptions.clone());
                }
            }
            Provider::Github => {
                registry.register(name, "push", Arc::new(github::Push::new(entities.clone())));
            }
            // No shipped handler: register your own; until then their events are `ignored`.
            Provider::Shopify
            | Provider::Slack
            | Provider::Standard
            | Provider::Paddle
            | Provider::Square
            | Provider::Twilio
            | Provider::Hmac => {}
        }
    }
    registry
}
