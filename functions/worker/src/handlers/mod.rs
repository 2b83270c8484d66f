//! The handlers Doorbell ships, one module per provider, and [`default_registry`], which
//! registers them for every configured source of that provider.
//!
//! They keep their state through [`doorbell::store::EntityStore`], newest-wins on the event's
//! own time, so a late older delivery never overwrites newer state.

pub mod github;
pub mod stripe;

use std::sync::Arc;

use doorbell::Provider;
use doorbell::handler::HandlerRegistry;
use doorbell::store::EntityStore;

/// Registers the shipped handlers for each `(source, provider)`:
/// Stripe `payment_intent.succeeded` → [`stripe::PaymentIntentSucceeded`];
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
