//! GitHub handlers.
//!
//! Payload shapes follow GitHub's "Webhook events and payloads"
//! (<https://docs.github.com/en/webhooks/webhook-events-and-payloads#push>).

use std::sync::Arc;

use doorbell::handler::{Event, Handler, HandlerOutcome};
use doorbell::store::EntityStore;
use serde_json::json;

use super::{Doc, FieldError, parse_body};

/// `push`: records the pushed commits as the branch's head.
///
/// Writes entity `("branch", "{repository.full_name}:{ref}")` with
/// `{"after","before","commits":[ids],"commit_count","pusher"}`, at version =
/// `repository.pushed_at` (epoch seconds → ms) when present, else the time ingest received it;
/// so a late delivery of an older push does not move the head back. Works for JSON and
/// form-encoded deliveries. A body without `ref`, `before`, `after` or
/// `repository.full_name` is rejected with a reason naming the field
/// (`push: missing field repository.full_name`).
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

/// The fields of a `push` event the handler keeps.
struct PushEvent<'a> {
    git_ref: &'a str,
    before: &'a str,
    after: &'a str,
    full_name: &'a str,
    pushed_at: Option<&'a serde_json::Value>,
    commits: Vec<&'a str>,
    pusher: Option<&'a str>,
}

impl<'a> PushEvent<'a> {
    fn read(doc: &Doc<'a>) -> Result<Self, FieldError> {
        let commits = doc
            .list("commits")?
            .iter()
            .map(|c| c.str("id"))
            .collect::<Result<_, _>>()?;
        let pusher = match doc.opt_object("pusher")? {
            Some(p) => Some(p.str("name")?),
            None => None,
        };
        Ok(Self {
            git_ref: doc.str("ref")?,
            before: doc.str("before")?,
            after: doc.str("after")?,
            full_name: doc.str("repository.full_name")?,
            pushed_at: doc.opt("repository.pushed_at")?,
            commits,
            pusher,
        })
    }
}

#[async_trait::async_trait]
impl Handler for Push {
    async fn handle(&self, event: &Event<'_>) -> HandlerOutcome {
        let body = match parse_body(event) {
            Ok(b) => b,
            Err(e) => return e.reject(event),
        };
        let push = match PushEvent::read(&Doc::root(&body)) {
            Ok(p) => p,
            Err(e) => return e.reject(event),
        };
        let version = push
            .pushed_at
            .and_then(serde_json::Value::as_i64)
            .map(|s| s.saturating_mul(1000))
            .or_else(|| {
                humantime::parse_rfc3339(&event.envelope.received_at)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
            })
            .unwrap_or(0);
        let id = format!("{}:{}", push.full_name, push.git_ref);
        let commits = &push.commits;
        let state = json!({
            "after": push.after,
            "before": push.before,
            "commits": commits,
            "commit_count": commits.len(),
            "pusher": push.pusher,
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

#[cfg(test)]
mod tests {
    use doorbell::Provider;
    use doorbell::handler::{Event, Handler, HandlerOutcome};
    use doorbell::store::SqliteEventStore;

    use super::*;
    use crate::handlers::test_envelope;

    async fn run(body: &str) -> HandlerOutcome {
        let h = Push::new(Arc::new(SqliteEventStore::in_memory().unwrap()));
        let envelope = test_envelope(Provider::Github, "push", body);
        h.handle(&Event {
            envelope: &envelope,
            body: body.as_bytes(),
        })
        .await
    }

    #[tokio::test]
    async fn push_error_names_the_missing_field() {
        let ok = r#"{"ref":"refs/heads/main","before":"a","after":"b",
            "repository":{"full_name":"o/r","pushed_at":1700000000},
            "commits":[{"id":"b"}],"pusher":{"name":"n"}}"#;
        assert_eq!(run(ok).await, HandlerOutcome::Ok);
        assert_eq!(
            run(r#"{"ref":"refs/heads/main","before":"a","after":"b","repository":{}}"#).await,
            HandlerOutcome::Reject("push: missing field repository.full_name".into())
        );
        assert_eq!(
            run(&ok.replace(r#"{"id":"b"}"#, r#"{"sha":"b"}"#)).await,
            HandlerOutcome::Reject("push: missing field commits[0].id".into())
        );
        let HandlerOutcome::Reject(reason) = run(r#"{"ref": TOPSECRET"#).await else {
            panic!("not JSON is rejected");
        };
        assert!(reason.starts_with("push: body is not JSON: "), "{reason}");
        assert!(!reason.contains("TOPSECRET"), "{reason}");
    }
}
