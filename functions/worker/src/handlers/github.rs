//! GitHub handlers.
//!
//! Payload shapes follow GitHub's "Webhook events and payloads"
//! (<https://docs.github.com/en/webhooks/webhook-events-and-payloads#push>).

use std::sync::Arc;

use doorbell::handler::{Event, Handler, HandlerOutcome};
use doorbell::store::EntityStore;
use serde::Deserialize;
use serde_json::json;

/// `push`: records the pushed commits as the branch's head.
///
/// Writes entity `("branch", "{repository.full_name}:{ref}")` with
/// `{"after","before","commits":[ids],"commit_count","pusher"}`, at version =
/// `repository.pushed_at` (epoch seconds → ms) when present, else the time ingest received it;
/// so a late delivery of an older push does not move the head back. Works for JSON and
/// form-encoded deliveries. A body without `ref`/`after`/`repository` is rejected.
#[derive(Debug, Clone)]
pub struct Push {
    entities: Arc<dyn EntityStore>,
}

impl Push {
    /// The handler, writing to `entities`.
    pub fn new(entities: Arc<dyn EntityStore>) -> Self {
        Self { entities }
    }
}

#[derive(Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    repository: Repository,
    #[serde(default)]
    commits: Vec<Commit>,
    #[serde(default)]
    pusher: Option<Pusher>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
    #[serde(default)]
    pushed_at: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Commit {
    id: String,
}

#[derive(Deserialize)]
struct Pusher {
    name: String,
}

#[async_trait::async_trait]
impl Handler for Push {
    async fn handle(&self, event: &Event<'_>) -> HandlerOutcome {
        let push: PushEvent = match event.json() {
            Ok(p) => p,
            Err(e) => {
                return HandlerOutcome::Reject(format!(
                    "malformed push: {}",
                    doorbell::redact::json_error(&e)
                ));
            }
        };
        let version = push
            .repository
            .pushed_at
            .as_ref()
            .and_then(serde_json::Value::as_i64)
            .map(|s| s.saturating_mul(1000))
            .or_else(|| {
                humantime::parse_rfc3339(&event.envelope.received_at)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
            })
            .unwrap_or(0);
        let id = format!("{}:{}", push.repository.full_name, push.git_ref);
        let commits: Vec<&str> = push.commits.iter().map(|c| c.id.as_str()).collect();
        let state = json!({
            "after": push.after,
            "before": push.before,
            "commits": commits,
            "commit_count": commits.len(),
            "pusher": push.pusher.map(|p| p.name),
            "delivery": event.envelope.event_id,
        });
        match self
            .entities
            .put_if_newer("branch", &id, version, &state)
            .await
        {
            Ok(written) => {
                tracing::info!(branch = %id, commits = commits.len(), write = ?written, "push recorded");
                HandlerOutcome::Ok
            }
            Err(e) => HandlerOutcome::Retry(e.to_string()),
        }
    }
}
