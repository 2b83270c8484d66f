//! Metrics as CloudWatch Embedded Metric Format (EMF) documents: one JSON object per line on
//! stdout, which Lambda ships to CloudWatch Logs, where the metrics are extracted. No API call,
//! no extra permission, nothing on the request path but a write to stdout.
//!
//! The format follows the specification,
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>:
//!
//! ```json
//! {"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"Doorbell",
//!   "Dimensions":[["source","outcome"],[]],"Metrics":[{"Name":"Processed","Unit":"Count"}]}]},
//!  "outcome":"processed","source":"stripe","Processed":1}
//! ```
//!
//! - `Timestamp` is epoch **milliseconds**; the namespace is always [`NAMESPACE`].
//! - Every metric is published twice: per source (`source`, with `outcome` or `reason` where it
//!   fits) and with the empty dimension set `[]` (the spec: "A DimensionSet MAY be empty"), the
//!   total across sources. CloudWatch keeps one series per dimension set and cannot add series
//!   up inside a metric alarm, so the alarms (and the dashboard's totals) read the totals.
//! - Dimension values are a source name from the configuration, `"unknown"`
//!   ([`UNKNOWN_SOURCE`]: never the URL segment of an unknown source, so a scanner cannot create
//!   series), or one of the code's own outcome and reason names. Event ids, message ids and
//!   idempotency keys are never in a document: as dimensions they would create a series per
//!   event, and they are in the log lines already.
//! - Documents are built with `serde_json`, so every value is escaped; a dimension value is cut
//!   to the spec's 1024 characters.
//!
//! Where documents go is a port, [`MetricsSink`]: [`EmfStdout`] in Lambda, [`NoMetrics`] (the
//! default everywhere else), [`MemoryMetrics`] for tests. [`check_document`] checks a parsed
//! document against the spec's rules.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Doorbell";

/// Dimension: the source (endpoint) name from the configuration, or [`UNKNOWN_SOURCE`].
pub const SOURCE: &str = "source";
/// Dimension: what happened to a worker record (`RecordOutcome::name`: `processed`, …).
pub const OUTCOME: &str = "outcome";
/// Dimension: why ingest turned a request down (`bad_signature`, `too_large`, …).
pub const REASON: &str = "reason";
/// The `source` value when there is no configured source to name.
pub const UNKNOWN_SOURCE: &str = "unknown";

/// Longest dimension value the spec allows, in characters.
pub const MAX_DIMENSION_VALUE_CHARS: usize = 1024;
/// Most dimension keys in one dimension set (the spec).
pub const MAX_DIMENSIONS_PER_SET: usize = 30;
/// Most metric definitions in one directive (the spec).
pub const MAX_METRICS_PER_DIRECTIVE: usize = 100;

/// A metric's unit (CloudWatch's unit names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// `Count`.
    Count,
    /// `Milliseconds`.
    Milliseconds,
}

impl Unit {
    /// The name CloudWatch uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// A metric: its name and unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Metric {
    /// The CloudWatch metric name.
    pub name: &'static str,
    /// Its unit.
    pub unit: Unit,
}

impl Metric {
    /// A counter.
    pub const fn count(name: &'static str) -> Self {
        Self {
            name,
            unit: Unit::Count,
        }
    }

    /// A duration in milliseconds.
    pub const fn milliseconds(name: &'static str) -> Self {
        Self {
            name,
            unit: Unit::Milliseconds,
        }
    }
}

/// Ingest: a request for a configured source (dimension `source`).
pub const RECEIVED: Metric = Metric::count("Received");
/// Ingest: a request turned down (dimensions `source`, `reason`); unknown sources count here
/// with source [`UNKNOWN_SOURCE`] and reason `unknown_source`.
pub const REJECTED: Metric = Metric::count("Rejected");
/// Ingest: an envelope the queue accepted (dimension `source`).
pub const ENQUEUED: Metric = Metric::count("Enqueued");
/// Ingest: a verified delivery the queue did not take, answered 503 (dimension `source`).
pub const ENQUEUE_FAILED: Metric = Metric::count("EnqueueFailed");

/// Worker: handler succeeded.
pub const PROCESSED: Metric = Metric::count("Processed");
/// Worker: no handler for the event type.
pub const IGNORED: Metric = Metric::count("Ignored");
/// Worker: already processed, acknowledged.
pub const DUPLICATE: Metric = Metric::count("Duplicate");
/// Worker: handler failed, event store failed, or not an envelope; reported for a retry.
pub const FAILED: Metric = Metric::count("Failed");
/// Worker: not run now (another attempt holds the lease, or an earlier record of its FIFO
/// group failed); reported, delivered again.
pub const DEFERRED: Metric = Metric::count("Deferred");
/// Worker: sent straight to the dead-letter queue (a handler's rejection or a conflict).
pub const DEAD_LETTERED: Metric = Metric::count("DeadLettered");
/// Worker: same idempotency key, another event type or body (also counted as dead-lettered).
pub const CONFLICT: Metric = Metric::count("Conflict");
/// Worker: how long the handler ran, milliseconds (only when one ran).
pub const HANDLER_DURATION: Metric = Metric::milliseconds("HandlerDuration");
/// Worker: from the envelope's `received_at` to the end of the batch that acknowledged the
/// record, milliseconds (only for records that left the queue).
pub const QUEUE_LAG: Metric = Metric::milliseconds("QueueLag");

/// Every metric ingest publishes.
pub const INGEST_METRICS: &[Metric] = &[RECEIVED, REJECTED, ENQUEUED, ENQUEUE_FAILED];
/// Every metric the worker publishes.
pub const WORKER_METRICS: &[Metric] = &[
    PROCESSED,
    IGNORED,
    DUPLICATE,
    FAILED,
    DEFERRED,
    DEAD_LETTERED,
    CONFLICT,
    HANDLER_DURATION,
    QUEUE_LAG,
];

/// One EMF document: a timestamp, dimension values, metric values, and which dimension sets
/// each metric is published under.
///
/// ```
/// use doorbell::metrics::{MetricsDoc, RECEIVED, SOURCE};
/// let doc = MetricsDoc::new(1_700_000_000_000)
///     .dimension(SOURCE, "stripe")
///     .put(&[&[SOURCE], &[]], RECEIVED, 1);
/// assert!(doc.to_line().starts_with(r#"{"_aws":{"Timestamp":1700000000000,"#));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsDoc {
    timestamp_ms: i64,
    dimensions: BTreeMap<&'static str, String>,
    values: BTreeMap<&'static str, i64>,
    directives: Vec<Directive>,
}

#[derive(Debug, Clone, PartialEq)]
struct Directive {
    dimension_sets: Vec<Vec<&'static str>>,
    metrics: Vec<Metric>,
}

impl MetricsDoc {
    /// An empty document for metrics at `timestamp_ms` (epoch **milliseconds**).
    pub fn new(timestamp_ms: i64) -> Self {
        Self {
            timestamp_ms,
            dimensions: BTreeMap::new(),
            values: BTreeMap::new(),
            directives: Vec::new(),
        }
    }

    /// Sets dimension `key` to `value` (cut to [`MAX_DIMENSION_VALUE_CHARS`] characters).
    #[must_use]
    pub fn dimension(mut self, key: &'static str, value: &str) -> Self {
        self.dimensions
            .insert(key, value.chars().take(MAX_DIMENSION_VALUE_CHARS).collect());
        self
    }

    /// Sets `metric` to `value` (a count, or milliseconds) and publishes it under each of
    /// `dimension_sets` (each a list of keys set with [`MetricsDoc::dimension`]; `&[]` is the
    /// total across everything). Setting a metric again replaces its value and its sets.
    #[must_use]
    pub fn put(mut self, dimension_sets: &[&[&'static str]], metric: Metric, value: i64) -> Self {
        for d in &mut self.directives {
            d.metrics.retain(|m| m.name != metric.name);
        }
        self.directives.retain(|d| !d.metrics.is_empty());
        self.values.insert(metric.name, value);
        let sets: Vec<Vec<&'static str>> = dimension_sets.iter().map(|s| s.to_vec()).collect();
        match self
            .directives
            .iter_mut()
            .find(|d| d.dimension_sets == sets && d.metrics.len() < MAX_METRICS_PER_DIRECTIVE)
        {
            Some(d) => d.metrics.push(metric),
            None => self.directives.push(Directive {
                dimension_sets: sets,
                metrics: vec![metric],
            }),
        }
        self
    }

    /// The value set for the metric named `name`.
    pub fn value(&self, name: &str) -> Option<i64> {
        self.values.get(name).copied()
    }

    /// The document as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self.wire()).unwrap_or(Value::Null)
    }

    /// The document as one line of JSON (no line break).
    pub fn to_line(&self) -> String {
        serde_json::to_string(&self.wire()).unwrap_or_default()
    }

    fn wire(&self) -> Wire<'_> {
        let mut members: BTreeMap<&str, Value> = BTreeMap::new();
        for (k, v) in &self.dimensions {
            members.insert(*k, Value::from(v.as_str()));
        }
        for (k, v) in &self.values {
            members.insert(*k, Value::from(*v));
        }
        Wire {
            aws: WireMeta {
                timestamp: self.timestamp_ms,
                cloud_watch_metrics: self
                    .directives
                    .iter()
                    .map(|d| WireDirective {
                        namespace: NAMESPACE,
                        dimensions: &d.dimension_sets,
                        metrics: d
                            .metrics
                            .iter()
                            .map(|m| WireMetric {
                                name: m.name,
                                unit: m.unit.as_str(),
                            })
                            .collect(),
                    })
                    .collect(),
            },
            members,
        }
    }
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "_aws")]
    aws: WireMeta<'a>,
    #[serde(flatten)]
    members: BTreeMap<&'a str, Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireMeta<'a> {
    timestamp: i64,
    cloud_watch_metrics: Vec<WireDirective<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireDirective<'a> {
    namespace: &'static str,
    dimensions: &'a [Vec<&'static str>],
    metrics: Vec<WireMetric>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireMetric {
    name: &'static str,
    unit: &'static str,
}

/// Where metrics documents go.
pub trait MetricsSink: Send + Sync + fmt::Debug {
    /// Publishes `doc`. Never fails the caller: a document that cannot be written is dropped.
    fn emit(&self, doc: &MetricsDoc);
}

/// Writes each document as one line to stdout (Lambda: to CloudWatch Logs, where EMF is
/// extracted). The whole line goes out in one write under stdout's lock, so it never
/// interleaves with a log line.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmfStdout;

impl MetricsSink for EmfStdout {
    fn emit(&self, doc: &MetricsDoc) {
        let mut line = doc.to_line();
        line.push('\n');
        let mut out = std::io::stdout().lock();
        // A metric is never worth failing a request or a record for.
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

/// Drops every document (local runs and tests that do not look at metrics).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn emit(&self, _doc: &MetricsDoc) {}
}

/// Keeps every document, as the JSON line [`EmfStdout`] would write, parsed back.
#[derive(Debug, Default)]
pub struct MemoryMetrics {
    docs: Mutex<Vec<Value>>,
}

impl MemoryMetrics {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The documents emitted so far, oldest first.
    pub fn documents(&self) -> Vec<Value> {
        self.docs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the documents emitted so far.
    pub fn clear(&self) {
        self.docs.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl MetricsSink for MemoryMetrics {
    fn emit(&self, doc: &MetricsDoc) {
        let parsed = serde_json::from_str(&doc.to_line()).unwrap_or(Value::Null);
        self.docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(parsed);
    }
}

/// The units the spec's schema allows.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Checks a parsed document against the EMF specification: `_aws.Timestamp` an integer
/// (milliseconds); `CloudWatchMetrics` a non-empty array of directives, each with exactly
/// `Namespace` (1–1024 characters), `Dimensions` (at least one set, each of at most 30 keys,
/// each key a root member holding a string of 1–1024 characters) and `Metrics` (at most 100
/// definitions, each `Name` and optional `Unit` from the spec's list, each name a root member
/// holding a number or an array of at most 100 numbers).
///
/// # Errors
/// The first rule the document breaks, in words.
pub fn check_document(doc: &Value) -> Result<(), String> {
    let root = doc.as_object().ok_or("the root is not an object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws object")?;
    if !aws
        .get("Timestamp")
        .is_some_and(|t| t.is_i64() || t.is_u64())
    {
        return Err("_aws.Timestamp is not an integer".into());
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or("_aws.CloudWatchMetrics is not a non-empty array")?;
    for d in directives {
        let d = d.as_object().ok_or("a directive is not an object")?;
        if let Some(k) = d
            .keys()
            .find(|k| !["Namespace", "Dimensions", "Metrics"].contains(&k.as_str()))
        {
            return Err(format!("a directive has an unknown member {k:?}"));
        }
        let namespace = d
            .get("Namespace")
            .and_then(Value::as_str)
            .ok_or("a directive has no Namespace")?;
        if namespace.is_empty() || namespace.chars().count() > 1024 {
            return Err(format!("Namespace {namespace:?} is not 1-1024 characters"));
        }
        let sets = d
            .get("Dimensions")
            .and_then(Value::as_array)
            .filter(|s| !s.is_empty())
            .ok_or("Dimensions is not a non-empty array")?;
        for set in sets {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > MAX_DIMENSIONS_PER_SET {
                return Err(format!("a dimension set has {} keys", set.len()));
            }
            for key in set {
                let key = key.as_str().ok_or("a dimension key is not a string")?;
                let value = root
                    .get(key)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("dimension {key:?} has no string member"))?;
                let n = value.chars().count();
                if n == 0 || n > MAX_DIMENSION_VALUE_CHARS {
                    return Err(format!("dimension {key:?} has {n} characters"));
                }
            }
        }
        let metrics = d
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or("Metrics is not an array")?;
        if metrics.len() > MAX_METRICS_PER_DIRECTIVE {
            return Err(format!("a directive has {} metrics", metrics.len()));
        }
        for m in metrics {
            let m = m
                .as_object()
                .ok_or("a metric definition is not an object")?;
            if let Some(k) = m
                .keys()
                .find(|k| !["Name", "Unit", "StorageResolution"].contains(&k.as_str()))
            {
                return Err(format!("a metric definition has an unknown member {k:?}"));
            }
            let name = m
                .get("Name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty() && n.chars().count() <= 1024)
                .ok_or("a metric has no Name of 1-1024 characters")?;
            if let Some(unit) = m.get("Unit")
                && !unit.as_str().is_some_and(|u| UNITS.contains(&u))
            {
                return Err(format!("metric {name:?} has unit {unit}"));
            }
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(a)) if a.len() <= 100 && a.iter().all(Value::is_number) => {}
                _ => return Err(format!("metric {name:?} has no numeric member")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> MetricsDoc {
        MetricsDoc::new(1_700_000_000_123)
            .dimension(SOURCE, "stripe")
            .dimension(OUTCOME, "processed")
            .put(&[&[SOURCE, OUTCOME], &[]], PROCESSED, 1)
            .put(&[&[SOURCE, OUTCOME], &[]], HANDLER_DURATION, 42)
    }

    #[test]
    fn writes_the_spec_shape_with_one_directive_per_dimension_sets() {
        assert_eq!(
            sample().to_value(),
            json!({
                "_aws": {"Timestamp": 1_700_000_000_123_i64, "CloudWatchMetrics": [{
                    "Namespace": "Doorbell",
                    "Dimensions": [["source", "outcome"], []],
                    "Metrics": [{"Name": "Processed", "Unit": "Count"},
                                {"Name": "HandlerDuration", "Unit": "Milliseconds"}]
                }]},
                "source": "stripe", "outcome": "processed", "Processed": 1, "HandlerDuration": 42
            })
        );
        check_document(&sample().to_value()).unwrap();
    }

    #[test]
    fn metrics_under_other_dimension_sets_get_their_own_directive() {
        let doc = MetricsDoc::new(0)
            .dimension(SOURCE, "github")
            .dimension(REASON, "bad_signature")
            .put(&[&[SOURCE], &[]], RECEIVED, 1)
            .put(&[&[SOURCE, REASON], &[]], REJECTED, 1)
            .to_value();
        let directives = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2);
        assert_eq!(
            directives[1]["Dimensions"],
            json!([["source", "reason"], []])
        );
        assert_eq!(
            directives[1]["Metrics"],
            json!([{"Name": "Rejected", "Unit": "Count"}])
        );
        check_document(&doc).unwrap();
    }

    #[test]
    fn putting_a_metric_again_replaces_its_value_and_sets() {
        let doc = sample().put(&[&[]], PROCESSED, 3);
        assert_eq!(doc.value("Processed"), Some(3));
        let v = doc.to_value();
        let directives = v["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2);
        assert_eq!(directives[1]["Dimensions"], json!([[]]));
        check_document(&v).unwrap();
    }

    #[test]
    fn the_line_is_one_line_with_hostile_values_escaped() {
        let hostile = "a\"b\nc\u{2028}\\d";
        let doc = MetricsDoc::new(1)
            .dimension(SOURCE, hostile)
            .put(&[&[SOURCE]], RECEIVED, 1);
        let line = doc.to_line();
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["source"], hostile);
        check_document(&back).unwrap();
    }

    #[test]
    fn dimension_values_are_cut_to_1024_characters() {
        let doc = MetricsDoc::new(1)
            .dimension(SOURCE, &"é".repeat(2000))
            .put(&[&[SOURCE]], RECEIVED, 1)
            .to_value();
        assert_eq!(doc["source"].as_str().unwrap().chars().count(), 1024);
        check_document(&doc).unwrap();
    }

    #[test]
    fn memory_sink_keeps_what_stdout_would_write() {
        let sink = MemoryMetrics::new();
        sink.emit(&sample());
        NoMetrics.emit(&sample());
        assert_eq!(sink.documents(), vec![sample().to_value()]);
        sink.clear();
        assert!(sink.documents().is_empty());
    }

    #[test]
    fn metric_names_are_unique() {
        let mut names: Vec<_> = INGEST_METRICS
            .iter()
            .chain(WORKER_METRICS)
            .map(|m| m.name)
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn the_checker_refuses_what_the_spec_refuses() {
        let good = sample().to_value();
        let broken = |f: fn(&mut Value)| {
            let mut v = good.clone();
            f(&mut v);
            check_document(&v)
        };
        assert!(broken(|v| v["_aws"]["Timestamp"] = json!(1.5)).is_err());
        assert!(broken(|v| v["_aws"]["Timestamp"] = json!("1")).is_err());
        assert!(broken(|v| v["_aws"]["CloudWatchMetrics"] = json!([])).is_err());
        assert!(broken(|v| v["Processed"] = json!("1")).is_err());
        assert!(
            broken(|v| {
                v.as_object_mut().unwrap().remove("HandlerDuration");
            })
            .is_err()
        );
        assert!(broken(|v| v["source"] = json!(1)).is_err());
        assert!(broken(|v| v["source"] = json!("")).is_err());
        assert!(broken(|v| v["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([])).is_err());
        assert!(
            broken(|v| v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("ms"))
                .is_err()
        );
        assert!(broken(|v| v["_aws"]["CloudWatchMetrics"][0]["Extra"] = json!(1)).is_err());
        assert!(
            broken(|v| {
                let keys: Vec<String> = (0..31).map(|i| format!("d{i}")).collect();
                for k in &keys {
                    v[k.as_str()] = json!("x");
                }
                v["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([keys]);
            })
            .is_err()
        );
        assert!(
            broken(|v| {
                let metrics: Vec<Value> =
                    (0..101).map(|i| json!({"Name": format!("m{i}")})).collect();
                for i in 0..101 {
                    v[format!("m{i}")] = json!(1);
                }
                v["_aws"]["CloudWatchMetrics"][0]["Metrics"] = json!(metrics);
            })
            .is_err()
        );
    }
}
