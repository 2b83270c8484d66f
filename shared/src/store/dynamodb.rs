//! DynamoDB event store and entity store (the `webhook_events` table).
//!
//! Item per idempotency key: `pk` (S, `{source}#{event_id}`), `source`, `provider`, `event_id`,
//! `event_type`, `status`, `received_at` (S); `attempts`, `lease_expires_at` (epoch ms),
//! `updated_at` (epoch ms), `processed_at` (epoch ms), `expires_at` (N, epoch **seconds**: the
//! table's TTL attribute); `body_sha256`, `last_error`, `outcome`, `payload` (S); `conflicts`
//! and `last_conflict_at` (epoch ms) once a conflicting delivery was refused.
//!
//! **The `alerts` index** (a global secondary index: hash `alert` (S), range `alert_at` (N, epoch
//! ms), all attributes projected) is sparse: only items that need an operator carry `alert`:
//! `FAILED` (set by [`EventStore::fail`]) or `CONFLICT` (set by
//! [`EventStore::record_conflict`]); a completion or a replay removes it. Successful events
//! never carry it, so they pay no index write, and `doorbell events ls --status failed` is one
//! `Query` on the index, never a scan (the [`crate::ops::EventIndex`] impl). DynamoDB, "Take
//! advantage of sparse indexes":
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-indexes-general-sparse-indexes.html>.
//! Entities live in the same table under `pk = "@entity#{kind}#{id}"` (`@` never starts a
//! source name) with `version` (N) and `state` (S, JSON).
//!
//! A claim is one `UpdateItem` whose condition is [`super::decide`]'s rule, with
//! `ReturnValuesOnConditionCheckFailure = ALL_OLD` so a refused claim says why without a
//! second read (DynamoDB docs, "UpdateItem", and Powertools' idempotency persistence layer).
//! `UpdateItem` rather than `PutItem` so `attempts` counts across claims and the first
//! `received_at` and payload are kept.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
};

use super::{
    ClaimOutcome, ClaimRequest, Entity, EntityStore, EntityWrite, EventRecord, EventStore, Status,
    StoreError, decide, truncate_error,
};

type Item = HashMap<String, AttributeValue>;

const CLAIM_UPDATE: &str = "SET #src = :source, provider = :provider, event_id = :event_id, \
    event_type = :event_type, #st = :in_progress, received_at = if_not_exists(received_at, :received_at), \
    attempts = if_not_exists(attempts, :zero) + :one, lease_expires_at = :lease, updated_at = :now, \
    body_sha256 = :sha, expires_at = :exp";
/// [`super::decide`]'s rule as a condition: no record, or (no live lease, and (the dedupe
/// window is over, or the same event type and content, not yet processed)).
/// `{same_content}` is `AND body_sha256 = :sha`, or nothing for a content key.
const CLAIM_CONDITION: &str = "attribute_not_exists(pk) OR ((#st <> :in_progress OR lease_expires_at < :now OR \
    (attribute_not_exists(lease_expires_at) AND (attribute_not_exists(updated_at) OR updated_at < :stale_before))) \
    AND (expires_at < :now_s OR (event_type = :event_type{same_content} AND #st <> :processed)))";
const FINISH_CONDITION: &str = "#st = :in_progress AND attempts = :attempt";

/// The sparse index of items that need attention; see the module docs.
pub const ALERTS_INDEX: &str = "alerts";
/// `alert` value of a failed event.
pub const ALERT_FAILED: &str = "FAILED";
/// `alert` value of an event that refused a conflicting delivery.
pub const ALERT_CONFLICT: &str = "CONFLICT";
/// Most keys in one `BatchGetItem` (DynamoDB's limit).
const BATCH_GET_MAX_KEYS: usize = 100;
/// `BatchGetItem` calls for one batch of keys before its unprocessed keys are an error.
const BATCH_GET_ATTEMPTS: u32 = 8;
/// Wait before the first retry of unprocessed keys, **milliseconds**; doubled each retry.
const BATCH_GET_BACKOFF_MS: u64 = 25;

/// The DynamoDB store. Cheap to clone (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct DynamoDbEventStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn unavailable<E: std::error::Error>(operation: &'static str, e: E) -> StoreError {
    StoreError::Unavailable {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}
fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn item_to_record(key: &str, item: &Item) -> Result<EventRecord, StoreError> {
    let corrupt = |what| StoreError::Corrupt {
        key: key.to_owned(),
        what,
    };
    let status = get_s(item, "status")
        .and_then(|v| Status::parse(&v))
        .ok_or(corrupt("unknown status"))?;
    Ok(EventRecord {
        key: key.to_owned(),
        source: get_s(item, "source").unwrap_or_default(),
        provider: get_s(item, "provider").unwrap_or_default(),
        event_id: get_s(item, "event_id").unwrap_or_default(),
        event_type: get_s(item, "event_type").unwrap_or_default(),
        status,
        attempts: get_n(item, "attempts")
            .unwrap_or(0)
            .clamp(0, u32::MAX as i64) as u32,
        received_at: get_s(item, "received_at").unwrap_or_default(),
        processed_at_ms: get_n(item, "processed_at"),
        lease_expires_at_ms: get_n(item, "lease_expires_at"),
        updated_at_ms: get_n(item, "updated_at"),
        expires_at_s: get_n(item, "expires_at"),
        body_sha256: get_s(item, "body_sha256").unwrap_or_default(),
        last_error: get_s(item, "last_error"),
        outcome: get_s(item, "outcome"),
        payload: get_s(item, "payload"),
        conflicts: get_n(item, "conflicts")
            .unwrap_or(0)
            .clamp(0, u32::MAX as i64) as u32,
        last_conflict_at_ms: get_n(item, "last_conflict_at"),
    })
}

impl DynamoDbEventStore {
    /// The store over table `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table (`pk` string hash key, on-demand) with the [`ALERTS_INDEX`] index
    /// (`alert` S hash, `alert_at` N range, all attributes) for local emulators and tests; in
    /// AWS the SAM template creates it, with TTL on `expires_at`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], including when the table exists.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let err = |e: aws_sdk_dynamodb::error::BuildError| unavailable("create_table", e);
        let attr = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
                .map_err(err)
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .map_err(err)
        };
        let alerts = GlobalSecondaryIndex::builder()
            .index_name(ALERTS_INDEX)
            .key_schema(key("alert", KeyType::Hash)?)
            .key_schema(key("alert_at", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(err)?;
        client
            .create_table()
            .table_name(table)
            .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
            .attribute_definitions(attr("alert", ScalarAttributeType::S)?)
            .attribute_definitions(attr("alert_at", ScalarAttributeType::N)?)
            .key_schema(key("pk", KeyType::Hash)?)
            .global_secondary_indexes(alerts)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| unavailable("create_table", e))?;
        Ok(())
    }

    /// The items under one `alert` value, newest `alert_at` first, at most `limit`, only of
    /// `source` when given: one `Query` on [`ALERTS_INDEX`], a page at a time.
    async fn query_alerts(
        &self,
        alert: &str,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(i64, EventRecord)>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ALERTS_INDEX)
                .key_condition_expression("alert = :alert")
                .expression_attribute_values(":alert", s(alert))
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take());
            if let Some(src) = source {
                q = q
                    .filter_expression("#src = :source")
                    .expression_attribute_names("#src", "source")
                    .expression_attribute_values(":source", s(src));
            } else {
                // Without a filter every item read is returned: read no more than wanted.
                q = q.limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX));
            }
            let page = q.send().await.map_err(|e| unavailable("alerts", e))?;
            for item in page.items.unwrap_or_default() {
                let Some(key) = get_s(&item, "pk") else {
                    continue;
                };
                let at = get_n(&item, "alert_at").unwrap_or(0);
                out.push((at, item_to_record(&key, &item)?));
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// One `BatchGetItem` of at most [`BATCH_GET_MAX_KEYS`] distinct keys, consistent reads,
    /// its unprocessed keys asked again with a doubling wait.
    async fn batch_get(&self, keys: &[String]) -> Result<Vec<EventRecord>, StoreError> {
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(
                keys.iter()
                    .map(|k| HashMap::from([("pk".to_owned(), s(k))]))
                    .collect(),
            ))
            .consistent_read(true)
            .build()
            .map_err(|e| unavailable("get_many", e))?;
        let mut out = Vec::with_capacity(keys.len());
        let mut wait_ms = BATCH_GET_BACKOFF_MS;
        for attempt in 1..=BATCH_GET_ATTEMPTS {
            let r = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| unavailable("get_many", e))?;
            for item in r
                .responses
                .unwrap_or_default()
                .remove(&self.table)
                .unwrap_or_default()
            {
                if let Some(key) = get_s(&item, "pk") {
                    out.push(item_to_record(&key, &item)?);
                }
            }
            match r
                .unprocessed_keys
                .unwrap_or_default()
                .remove(&self.table)
                .filter(|k| !k.keys.is_empty())
            {
                None => return Ok(out),
                Some(rest) if attempt < BATCH_GET_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
                    wait_ms *= 2;
                    request = rest;
                }
                Some(rest) => {
                    return Err(StoreError::Unavailable {
                        operation: "get_many",
                        message: format!(
                            "{} keys still unprocessed after {BATCH_GET_ATTEMPTS} BatchGetItem calls (throttled)",
                            rest.keys.len()
                        ),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn finish(
        &self,
        key: &str,
        attempt: u32,
        update: &str,
        mut values: Item,
        op: &'static str,
    ) -> Result<(), StoreError> {
        values.insert(":in_progress".into(), s(Status::InProgress.as_str()));
        values.insert(":attempt".into(), n(attempt));
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .update_expression(update)
            .condition_expression(FINISH_CONDITION)
            .expression_attribute_names("#st", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                let msg = DisplayErrorContext(&e).to_string();
                match e.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(_) => {
                        Err(StoreError::LeaseLost {
                            key: key.to_owned(),
                        })
                    }
                    _ => Err(StoreError::Unavailable {
                        operation: op,
                        message: msg,
                    }),
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl EventStore for DynamoDbEventStore {
    async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let mut values: Item = HashMap::from([
            (":source".into(), s(&req.source)),
            (":provider".into(), s(&req.provider)),
            (":event_id".into(), s(&req.event_id)),
            (":event_type".into(), s(&req.event_type)),
            (":in_progress".into(), s(Status::InProgress.as_str())),
            (":processed".into(), s(Status::Processed.as_str())),
            (":received_at".into(), s(&req.received_at)),
            (":zero".into(), n(0)),
            (":one".into(), n(1)),
            (":lease".into(), n(req.lease_expires_at_ms)),
            (":now".into(), n(req.now_ms)),
            (":now_s".into(), n(req.now_ms.div_euclid(1000))),
            (":stale_before".into(), n(req.now_ms - req.stale_after_ms)),
            (":sha".into(), s(&req.body_sha256)),
            (":exp".into(), n(req.expires_at_s)),
        ]);
        let mut update = String::from(CLAIM_UPDATE);
        let mut names = HashMap::from([
            ("#st".to_owned(), "status".to_owned()),
            ("#src".to_owned(), "source".to_owned()),
        ]);
        if let Some(p) = &req.payload {
            update.push_str(", #pl = if_not_exists(#pl, :payload)");
            names.insert("#pl".into(), "payload".into());
            values.insert(":payload".into(), s(p));
        }
        update.push_str(" REMOVE processed_at");
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&req.key))
            .update_expression(update)
            .condition_expression(CLAIM_CONDITION.replace(
                "{same_content}",
                if req.content_keyed {
                    ""
                } else {
                    " AND body_sha256 = :sha"
                },
            ))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(out) => {
                let attempts = out
                    .attributes
                    .as_ref()
                    .and_then(|a| get_n(a, "attempts"))
                    .unwrap_or(1);
                Ok(ClaimOutcome::Claimed {
                    attempts: attempts.clamp(1, u32::MAX as i64) as u32,
                })
            }
            Err(e) => {
                let msg = DisplayErrorContext(&e).to_string();
                match e.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(c) => {
                        let old = c
                            .item
                            .as_ref()
                            .map(|i| item_to_record(&req.key, i))
                            .transpose()?;
                        // The condition is decide()'s rule, so decide() names the reason. If the
                        // clock moved between the write and here, treat it as held elsewhere.
                        Ok(
                            decide(old.as_ref(), req).unwrap_or(ClaimOutcome::InProgress {
                                lease_expires_at_ms: old.and_then(|o| o.lease_expires_at_ms),
                            }),
                        )
                    }
                    _ => Err(StoreError::Unavailable {
                        operation: "claim",
                        message: msg,
                    }),
                }
            }
        }
    }

    async fn complete(
        &self,
        key: &str,
        attempt: u32,
        outcome: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let values = HashMap::from([
            (":processed".into(), s(Status::Processed.as_str())),
            (":now".into(), n(now_ms)),
            (":outcome".into(), s(outcome)),
        ]);
        self.finish(
            key,
            attempt,
            "SET #st = :processed, processed_at = :now, outcome = :outcome, updated_at = :now REMOVE lease_expires_at, alert, alert_at",
            values,
            "complete",
        )
        .await
    }

    async fn fail(
        &self,
        key: &str,
        attempt: u32,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let values = HashMap::from([
            (":failed".into(), s(Status::Failed.as_str())),
            (":now".into(), n(now_ms)),
            (":error".into(), s(truncate_error(error))),
            (":alert".into(), s(ALERT_FAILED)),
        ]);
        self.finish(
            key,
            attempt,
            "SET #st = :failed, last_error = :error, updated_at = :now, alert = :alert, alert_at = :now REMOVE lease_expires_at",
            values,
            "fail",
        )
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<EventRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("get", e))?;
        out.item
            .as_ref()
            .map(|i| item_to_record(key, i))
            .transpose()
    }

    async fn record_conflict(&self, key: &str, now_ms: i64) -> Result<(), StoreError> {
        // Only on a record that exists: a conflict never creates one.
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .update_expression(
                "SET conflicts = if_not_exists(conflicts, :zero) + :one, last_conflict_at = :now, \
                 alert = :alert, alert_at = :now",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":alert", s(ALERT_CONFLICT))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => Ok(()),
                e => Err(unavailable("record_conflict", e)),
            })
    }

    async fn record_replay(
        &self,
        key: &str,
        outcome: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .update_expression(
                "SET #st = :processed, outcome = :outcome, processed_at = :now, updated_at = :now, \
                 REMOVE lease_expires_at, alert, alert_at",
            )
            .condition_expression(
                "attribute_exists(pk) AND (#st <> :in_progress OR attribute_not_exists(lease_expires_at) OR lease_expires_at < :now)",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":processed", s(Status::Processed.as_str()))
            .expression_attribute_values(":in_progress", s(Status::InProgress.as_str()))
            .expression_attribute_values(":outcome", s(outcome))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await
            .map(|_| true)
            .or_else(|e| match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => Ok(false),
                e => Err(unavailable("record_replay", e)),
            })
    }

    async fn put_record(&self, r: &EventRecord) -> Result<(), StoreError> {
        let mut item: Item = HashMap::from([
            ("pk".into(), s(&r.key)),
            ("source".into(), s(&r.source)),
            ("provider".into(), s(&r.provider)),
            ("event_id".into(), s(&r.event_id)),
            ("event_type".into(), s(&r.event_type)),
            ("status".into(), s(r.status.as_str())),
            ("attempts".into(), n(r.attempts)),
            ("received_at".into(), s(&r.received_at)),
            ("body_sha256".into(), s(&r.body_sha256)),
        ]);
        let opt_n = [
            ("processed_at", r.processed_at_ms),
            ("lease_expires_at", r.lease_expires_at_ms),
            ("updated_at", r.updated_at_ms),
            ("expires_at", r.expires_at_s),
            ("last_conflict_at", r.last_conflict_at_ms),
        ];
        if r.conflicts > 0 {
            item.insert("conflicts".into(), n(r.conflicts));
        }
        for (k, v) in opt_n {
            if let Some(v) = v {
                item.insert(k.into(), n(v));
            }
        }
        for (k, v) in [
            ("last_error", &r.last_error),
            ("outcome", &r.outcome),
            ("payload", &r.payload),
        ] {
            if let Some(v) = v {
                item.insert(k.into(), s(v));
            }
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| unavailable("put", e))?;
        Ok(())
    }
}

/// `alerts` is a `Query` per requested kind on the sparse [`ALERTS_INDEX`] (never a scan);
/// `get_many` is `BatchGetItem` with consistent reads. Index reads are eventually consistent:
/// a record failed a moment ago may be listed a moment later.
#[async_trait::async_trait]
impl crate::ops::EventIndex for DynamoDbEventStore {
    async fn alerts(&self, q: &crate::ops::AlertQuery) -> Result<Vec<EventRecord>, StoreError> {
        let mut found = Vec::new();
        for (wanted, alert) in [(q.failed, ALERT_FAILED), (q.conflicts, ALERT_CONFLICT)] {
            if wanted && q.limit > 0 {
                found.extend(
                    self.query_alerts(alert, q.source.as_deref(), q.limit)
                        .await?,
                );
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.key.cmp(&b.1.key)));
        found.truncate(q.limit);
        Ok(found.into_iter().map(|(_, r)| r).collect())
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<EventRecord>, StoreError> {
        // BatchGetItem refuses a request that names a key twice.
        let mut distinct: Vec<String> = keys.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let mut out = Vec::with_capacity(distinct.len());
        for chunk in distinct.chunks(BATCH_GET_MAX_KEYS) {
            out.extend(self.batch_get(chunk).await?);
        }
        Ok(out)
    }
}

fn entity_key(kind: &str, id: &str) -> String {
    format!("@entity#{kind}#{id}")
}

#[async_trait::async_trait]
impl EntityStore for DynamoDbEventStore {
    async fn put_if_newer(
        &self,
        kind: &str,
        id: &str,
        version: i64,
        state: &serde_json::Value,
    ) -> Result<EntityWrite, StoreError> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(entity_key(kind, id)))
            .item("version", n(version))
            .item("state", s(state.to_string()))
            .condition_expression(
                "attribute_not_exists(pk) OR (version < :v AND attribute_not_exists(deleted))",
            )
            .expression_attribute_values(":v", n(version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(EntityWrite::Written),
            Err(SdkError::ServiceError(se)) => match se.err() {
                PutItemError::ConditionalCheckFailedException(c) => {
                    Ok(if c.item().is_some_and(|old| old.contains_key("deleted")) {
                        EntityWrite::Deleted
                    } else {
                        EntityWrite::Stale
                    })
                }
                _ => Err(unavailable("put_entity", SdkError::ServiceError(se))),
            },
            Err(e) => Err(unavailable("put_entity", e)),
        }
    }

    async fn delete(
        &self,
        kind: &str,
        id: &str,
        version: i64,
        state: &serde_json::Value,
    ) -> Result<EntityWrite, StoreError> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(entity_key(kind, id)))
            .item("version", n(version))
            .item("state", s(state.to_string()))
            .item("deleted", AttributeValue::Bool(true))
            .condition_expression("attribute_not_exists(deleted)")
            .send()
            .await;
        match r {
            Ok(_) => Ok(EntityWrite::Written),
            Err(SdkError::ServiceError(se))
                if matches!(se.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(EntityWrite::Deleted)
            }
            Err(e) => Err(unavailable("delete_entity", e)),
        }
    }

    async fn get_entity(&self, kind: &str, id: &str) -> Result<Option<Entity>, StoreError> {
        let key = entity_key(kind, id);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("get_entity", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let version = get_n(&item, "version").ok_or(StoreError::Corrupt {
            key: key.clone(),
            what: "no version",
        })?;
        let state = get_s(&item, "state")
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or(StoreError::Corrupt {
                key,
                what: "state is not JSON",
            })?;
        Ok(Some(Entity {
            version,
            state,
            deleted: matches!(item.get("deleted"), Some(AttributeValue::Bool(true))),
        }))
    }
}
