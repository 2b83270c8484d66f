//! The operations layer's AWS adapter: a deployed stack's queues, table and buckets.
//!
//! [`resolve`] names the resources: each one given in the [`AwsTarget`] is used as given;
//! the rest come from the stack's outputs (CloudFormation `DescribeStacks`), by the names the
//! template gives them ([`OUTPUT_QUEUE_URL`], [`OUTPUT_DLQ_URL`], [`OUTPUT_TABLE`],
//! [`OUTPUT_PAYLOAD_BUCKET`], [`OUTPUT_ARCHIVE_BUCKET`], [`OUTPUT_ARCHIVE_PREFIX`]).
//!
//! [`open`] assembles an [`Ops`] over them:
//! - the events queue and the dead-letter queue ([`SqsQueue`]); the events queue is
//!   claim-checked ([`ClaimCheckQueue`] over [`S3PayloadStore`]) when a payload bucket is known,
//!   so a redriven or replayed envelope over the queue's limit still fits;
//! - the `webhook_events` table ([`DynamoDbEventStore`]), which is also the
//!   [`super::EventIndex`] (its sparse `alerts` index);
//! - the archive bucket's reader ([`S3ArchiveReader`], the stack's partitioned layout under
//!   the archive prefix);
//! - [`CloudWatchCounters`]: the worker's metrics (namespace [`crate::metrics::NAMESPACE`]) and
//!   SQS's `ApproximateAgeOfOldestMessage`.
//!
//! Units: `*_ms` epoch **milliseconds**; ages and periods **seconds**.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, DimensionFilter, Metric, MetricDataQuery, MetricStat, ScanBy,
};
use aws_types::SdkConfig;

use super::{Counters, Counts, EventStatus, Ops, OpsError};
use crate::archive::{Archive, AwsArchive, S3ArchiveReader};
use crate::clock::Clock;
use crate::metrics;
use crate::payload::S3PayloadStore;
use crate::queue::{ClaimCheckQueue, EventQueue, SqsQueue};
use crate::store::DynamoDbEventStore;

/// Stack output: the events queue URL.
pub const OUTPUT_QUEUE_URL: &str = "EventsQueueUrl";
/// Stack output: the dead-letter queue URL.
pub const OUTPUT_DLQ_URL: &str = "DeadLetterQueueUrl";
/// Stack output: the `webhook_events` table name.
pub const OUTPUT_TABLE: &str = "EventsTableName";
/// Stack output: the claim-check bucket.
pub const OUTPUT_PAYLOAD_BUCKET: &str = "PayloadBucketName";
/// Stack output: the archive bucket.
pub const OUTPUT_ARCHIVE_BUCKET: &str = "ArchiveBucketName";
/// Stack output: the key prefix of archived objects in the archive bucket.
pub const OUTPUT_ARCHIVE_PREFIX: &str = "ArchivePrefix";
/// The archive prefix when neither the target nor the stack names one.
pub const DEFAULT_ARCHIVE_PREFIX: &str = crate::archive::DEFAULT_PREFIX;

/// Which deployment to act on. Every field left `None` comes from the stack's outputs; with
/// no stack, the queue URLs and the table must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsTarget {
    /// The CloudFormation stack (`sam deploy --stack-name`).
    pub stack: Option<String>,
    /// The events queue URL (over the stack's [`OUTPUT_QUEUE_URL`]).
    pub queue_url: Option<String>,
    /// The dead-letter queue URL (over [`OUTPUT_DLQ_URL`]).
    pub dlq_url: Option<String>,
    /// The events table (over [`OUTPUT_TABLE`]).
    pub table: Option<String>,
    /// The claim-check bucket (over [`OUTPUT_PAYLOAD_BUCKET`]).
    pub payload_bucket: Option<String>,
    /// The archive bucket (over [`OUTPUT_ARCHIVE_BUCKET`]).
    pub archive_bucket: Option<String>,
    /// The archive's key prefix (over [`OUTPUT_ARCHIVE_PREFIX`]; default
    /// [`DEFAULT_ARCHIVE_PREFIX`]).
    pub archive_prefix: Option<String>,
}

/// The resources [`resolve`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsResources {
    /// The events queue URL.
    pub queue_url: String,
    /// The dead-letter queue URL.
    pub dlq_url: String,
    /// The events table.
    pub table: String,
    /// The claim-check bucket, if any.
    pub payload_bucket: Option<String>,
    /// The archive bucket, if any.
    pub archive_bucket: Option<String>,
    /// The archive's key prefix.
    pub archive_prefix: String,
}

/// Combines `target` with the outputs of its stack (`outputs`, when there is a stack).
///
/// # Errors
/// [`OpsError::Invalid`] naming what is missing and where it was looked for.
pub fn resources_from(
    target: &AwsTarget,
    outputs: Option<&HashMap<String, String>>,
) -> Result<AwsResources, OpsError> {
    let pick = |given: &Option<String>, output: &str| {
        given
            .clone()
            .or_else(|| outputs.and_then(|o| o.get(output).cloned()))
            .filter(|v| !v.is_empty())
    };
    let required = |given: &Option<String>, output: &str, flag: &str| {
        pick(given, output).ok_or_else(|| {
            OpsError::Invalid(match &target.stack {
                Some(stack) => format!(
                    "stack {stack} has no output {output}: is it a Doorbell stack? (or pass {flag})"
                ),
                None => format!(
                    "no {flag}: pass --stack NAME (the Doorbell stack), or --queue-url, --dlq-url and --table"
                ),
            })
        })
    };
    Ok(AwsResources {
        queue_url: required(&target.queue_url, OUTPUT_QUEUE_URL, "--queue-url")?,
        dlq_url: required(&target.dlq_url, OUTPUT_DLQ_URL, "--dlq-url")?,
        table: required(&target.table, OUTPUT_TABLE, "--table")?,
        payload_bucket: pick(&target.payload_bucket, OUTPUT_PAYLOAD_BUCKET),
        archive_bucket: pick(&target.archive_bucket, OUTPUT_ARCHIVE_BUCKET),
        archive_prefix: pick(&target.archive_prefix, OUTPUT_ARCHIVE_PREFIX)
            .unwrap_or_else(|| DEFAULT_ARCHIVE_PREFIX.to_owned()),
    })
}

/// The outputs of stack `stack` (CloudFormation `DescribeStacks`), by output key.
///
/// # Errors
/// [`OpsError::Invalid`] when there is no such stack in the configured account and region, or
/// it cannot be described (credentials, network).
pub async fn stack_outputs(
    stack: &str,
    config: &SdkConfig,
) -> Result<HashMap<String, String>, OpsError> {
    let region = config
        .region()
        .map_or_else(|| "the configured region".to_owned(), |r| r.to_string());
    let client = aws_sdk_cloudformation::Client::new(config);
    let out = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            let text = DisplayErrorContext(&e).to_string();
            OpsError::Invalid(if text.contains("does not exist") {
                format!(
                    "no stack {stack} in {region}: check --stack and the region (AWS_REGION, AWS_PROFILE)"
                )
            } else {
                format!("stack {stack}: DescribeStacks failed: {text}")
            })
        })?;
    let found = out
        .stacks
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| OpsError::Invalid(format!("no stack {stack} in {region}")))?;
    Ok(found
        .outputs
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| Some((o.output_key?, o.output_value?)))
        .collect())
}

/// The resources `target` names, reading its stack's outputs when it names a stack.
///
/// # Errors
/// As [`stack_outputs`] and [`resources_from`].
pub async fn resolve(target: &AwsTarget, config: &SdkConfig) -> Result<AwsResources, OpsError> {
    let outputs = match &target.stack {
        Some(stack) => Some(stack_outputs(stack, config).await?),
        None => None,
    };
    resources_from(target, outputs.as_ref())
}

/// The operations layer over the deployment `target` names. See the module docs.
///
/// # Errors
/// As [`resolve`].
pub async fn open(
    target: &AwsTarget,
    config: &SdkConfig,
    clock: Arc<dyn Clock>,
) -> Result<Ops, OpsError> {
    let resources = resolve(target, config).await?;
    let archive = archive_reader(&resources, config, clock.clone());
    Ok(open_resources(&resources, config, archive, clock))
}

/// The archive bucket's reader ([`S3ArchiveReader`], the stack's layout); with no archive
/// bucket known, an archive whose every read says so.
fn archive_reader(
    resources: &AwsResources,
    config: &SdkConfig,
    clock: Arc<dyn Clock>,
) -> Arc<dyn Archive> {
    Arc::new(AwsArchive {
        writer: None,
        reader: resources.archive_bucket.as_ref().map(|bucket| {
            S3ArchiveReader::from_conf(config, bucket, &resources.archive_prefix).with_clock(clock)
        }),
    })
}

/// [`Ops`] over `resources`, with `archive` as its archive.
pub fn open_resources(
    resources: &AwsResources,
    config: &SdkConfig,
    archive: Arc<dyn Archive>,
    clock: Arc<dyn Clock>,
) -> Ops {
    let sqs = aws_sdk_sqs::Client::new(config);
    let store = Arc::new(DynamoDbEventStore::new(
        aws_sdk_dynamodb::Client::new(config),
        &resources.table,
    ));
    let events: Arc<dyn EventQueue> = Arc::new(SqsQueue::new(sqs.clone(), &resources.queue_url));
    let payloads = resources
        .payload_bucket
        .as_ref()
        .map(|b| Arc::new(S3PayloadStore::from_conf(config, b)));
    let queue: Arc<dyn EventQueue> = match &payloads {
        Some(p) => Arc::new(ClaimCheckQueue::new(events, p.clone())),
        None => events,
    };
    Ops {
        store: store.clone(),
        index: store,
        archive,
        queue,
        dlq: Arc::new(SqsQueue::new(sqs, &resources.dlq_url)),
        payloads: payloads.map(|p| p as Arc<dyn crate::payload::PayloadStore>),
        counters: Arc::new(CloudWatchCounters::new(
            aws_sdk_cloudwatch::Client::new(config),
            &resources.queue_url,
            &resources.dlq_url,
            clock.clone(),
        )),
        clock,
    }
}

/// The worker metrics [`CloudWatchCounters::counts`] reads, and the status each counts.
pub const STATUS_METRICS: [(metrics::Metric, EventStatus); 5] = [
    (metrics::PROCESSED, EventStatus::Processed),
    (metrics::IGNORED, EventStatus::Ignored),
    (metrics::FAILED, EventStatus::Failed),
    (metrics::CONFLICT, EventStatus::Conflict),
    (metrics::DEAD_LETTERED, EventStatus::DeadLettered),
];

/// Most queries in one `GetMetricData` call (CloudWatch's limit).
const MAX_QUERIES: usize = 500;
/// How far back [`CloudWatchCounters::oldest_ages_s`] looks, **seconds**.
const AGE_LOOKBACK_S: i64 = 300;

/// Counts from CloudWatch: the worker's per-source metrics in namespace
/// [`crate::metrics::NAMESPACE`] (published as EMF, see [`crate::metrics`]), and the queues'
/// `AWS/SQS` `ApproximateAgeOfOldestMessage`.
///
/// [`Counters::counts`] finds the series with `ListMetrics` (every series of the namespace
/// with a `source` dimension) and sums each over the window with `GetMetricData` (`Sum`, one
/// period covering the window). Where a metric is published per source under more than one
/// dimension set (`[source]`, `[source, outcome]`), only the smallest set is read, so nothing
/// is counted twice. The counts are of deliveries as the worker saw them: a record that failed
/// three times counts three `failed`. Metrics are extracted from the logs within a minute or
/// two, and `ListMetrics` lists a new series up to 15 minutes late.
#[derive(Debug, Clone)]
pub struct CloudWatchCounters {
    client: aws_sdk_cloudwatch::Client,
    queue_name: String,
    dlq_name: String,
    clock: Arc<dyn Clock>,
}

/// The queue's name: the last path segment of its URL (SQS's `QueueName` dimension).
pub fn queue_name(queue_url: &str) -> &str {
    queue_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(queue_url)
}

/// A `GetMetricData` period, **seconds**, covering `window_s`: a multiple of 60, of 300 past
/// five minutes, of 3600 past an hour (CloudWatch's periods for data up to 15 days, 63 days
/// and older; a window that long starts that far back).
fn period_covering(window_s: i64) -> i32 {
    let up = |v: i64, m: i64| (v + m - 1) / m * m;
    let mut p = up(window_s.max(1), 60);
    if p > 300 {
        p = up(p, 300);
    }
    if p > 3600 {
        p = up(p, 3600);
    }
    i32::try_from(p).unwrap_or(i32::MAX / 3600 * 3600)
}

fn counters_error<E: std::error::Error>(operation: &str, e: E) -> OpsError {
    OpsError::Counters(format!(
        "CloudWatch {operation} failed: {}",
        DisplayErrorContext(e)
    ))
}

impl CloudWatchCounters {
    /// Counters for the queues at `queue_url` and `dlq_url`.
    pub fn new(
        client: aws_sdk_cloudwatch::Client,
        queue_url: &str,
        dlq_url: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            queue_name: queue_name(queue_url).to_owned(),
            dlq_name: queue_name(dlq_url).to_owned(),
            clock,
        }
    }

    /// Every series of the namespace with a `source` dimension whose metric is one of
    /// [`STATUS_METRICS`].
    async fn series(&self) -> Result<Vec<Metric>, OpsError> {
        let filter = DimensionFilter::builder().name(metrics::SOURCE).build();
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_metrics()
                .namespace(metrics::NAMESPACE)
                .dimensions(filter.clone())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| counters_error("ListMetrics", e))?;
            out.extend(page.metrics.unwrap_or_default().into_iter().filter(|m| {
                STATUS_METRICS
                    .iter()
                    .any(|(s, _)| m.metric_name() == Some(s.name))
            }));
            match page.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Sums of each query over `[start_ms, end_ms)` by query id (every data point added).
    async fn sums(
        &self,
        queries: Vec<MetricDataQuery>,
        start_ms: i64,
        end_ms: i64,
        scan_by: ScanBy,
    ) -> Result<HashMap<String, Vec<f64>>, OpsError> {
        let mut out: HashMap<String, Vec<f64>> = HashMap::new();
        for chunk in queries.chunks(MAX_QUERIES) {
            let mut token = None;
            loop {
                let page = self
                    .client
                    .get_metric_data()
                    .set_metric_data_queries(Some(chunk.to_vec()))
                    .start_time(DateTime::from_millis(start_ms))
                    .end_time(DateTime::from_millis(end_ms))
                    .scan_by(scan_by.clone())
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| counters_error("GetMetricData", e))?;
                for r in page.metric_data_results.unwrap_or_default() {
                    if let Some(id) = r.id {
                        out.entry(id)
                            .or_default()
                            .extend(r.values.unwrap_or_default());
                    }
                }
                match page.next_token {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}

fn query(id: String, metric: Metric, period_s: i32, stat: &str) -> MetricDataQuery {
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(period_s)
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}

fn dimension_value<'a>(m: &'a Metric, name: &str) -> Option<&'a str> {
    m.dimensions()
        .iter()
        .find(|d| d.name() == Some(name))
        .and_then(Dimension::value)
}

/// Keeps, for each (metric, source), the series of the smallest dimension set (ties: the
/// first set by name), each series once, so one event is counted once.
fn one_set_per_source(mut series: Vec<Metric>) -> Vec<(String, EventStatus, Metric)> {
    let identity = |m: &Metric| {
        let mut dims: Vec<(Option<String>, Option<String>)> = m
            .dimensions()
            .iter()
            .map(|d| (d.name().map(str::to_owned), d.value().map(str::to_owned)))
            .collect();
        dims.sort();
        (m.metric_name().map(str::to_owned), dims)
    };
    let mut listed = std::collections::HashSet::new();
    series.retain(|m| listed.insert(identity(m)));
    let key_names = |m: &Metric| {
        let mut names: Vec<String> = m
            .dimensions()
            .iter()
            .filter_map(|d| d.name().map(str::to_owned))
            .collect();
        names.sort();
        names
    };
    let mut best: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for m in &series {
        let (Some(name), Some(source)) = (m.metric_name(), dimension_value(m, metrics::SOURCE))
        else {
            continue;
        };
        let names = key_names(m);
        best.entry((name.to_owned(), source.to_owned()))
            .and_modify(|b| {
                if (names.len(), &names) < (b.len(), &*b) {
                    *b = names.clone();
                }
            })
            .or_insert(names);
    }
    series
        .into_iter()
        .filter_map(|m| {
            let name = m.metric_name()?.to_owned();
            let source = dimension_value(&m, metrics::SOURCE)?.to_owned();
            let status = STATUS_METRICS
                .iter()
                .find(|(s, _)| s.name == name)
                .map(|(_, st)| *st)?;
            (best.get(&(name, source.clone())) == Some(&key_names(&m)))
                .then_some((source, status, m))
        })
        .collect()
}

#[async_trait::async_trait]
impl Counters for CloudWatchCounters {
    async fn counts(&self, since_ms: i64, until_ms: i64) -> Result<Counts, OpsError> {
        if until_ms <= since_ms {
            return Ok(Counts::new());
        }
        let picked = one_set_per_source(self.series().await?);
        let period = period_covering((until_ms - since_ms + 999) / 1000);
        let queries = picked
            .iter()
            .enumerate()
            .map(|(i, (_, _, m))| query(format!("m{i}"), m.clone(), period, "Sum"))
            .collect();
        let sums = self
            .sums(queries, since_ms, until_ms, ScanBy::TimestampAscending)
            .await?;
        let mut out = Counts::new();
        for (i, (source, status, _)) in picked.into_iter().enumerate() {
            let total: f64 = sums.get(&format!("m{i}")).map_or(0.0, |v| v.iter().sum());
            let n = total.round().max(0.0) as u64;
            if n > 0 {
                *out.entry(source).or_default().entry(status).or_default() += n;
            }
        }
        Ok(out)
    }

    fn describe(&self) -> &'static str {
        "CloudWatch"
    }

    async fn oldest_ages_s(&self) -> Result<(Option<i64>, Option<i64>), OpsError> {
        let now = self.clock.now_ms();
        let metric = |queue: &str| {
            Metric::builder()
                .namespace("AWS/SQS")
                .metric_name("ApproximateAgeOfOldestMessage")
                .dimensions(Dimension::builder().name("QueueName").value(queue).build())
                .build()
        };
        let queries = vec![
            query("queue".into(), metric(&self.queue_name), 60, "Maximum"),
            query("dlq".into(), metric(&self.dlq_name), 60, "Maximum"),
        ];
        let latest = self
            .sums(
                queries,
                now - AGE_LOOKBACK_S * 1000,
                now,
                ScanBy::TimestampDescending,
            )
            .await?;
        let first = |id: &str| {
            latest
                .get(id)
                .and_then(|v| v.first())
                .map(|s| s.round() as i64)
        };
        Ok((first("queue"), first("dlq")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs() -> HashMap<String, String> {
        [
            (OUTPUT_QUEUE_URL, "https://sqs/q"),
            (OUTPUT_DLQ_URL, "https://sqs/dlq"),
            (OUTPUT_TABLE, "t"),
            (OUTPUT_PAYLOAD_BUCKET, "payloads"),
            (OUTPUT_ARCHIVE_BUCKET, "archive"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn explicit_names_override_the_stack_outputs() {
        let target = AwsTarget {
            stack: Some("doorbell".into()),
            table: Some("other".into()),
            archive_prefix: Some("a/".into()),
            ..Default::default()
        };
        let r = resources_from(&target, Some(&outputs())).unwrap();
        assert_eq!(
            r,
            AwsResources {
                queue_url: "https://sqs/q".into(),
                dlq_url: "https://sqs/dlq".into(),
                table: "other".into(),
                payload_bucket: Some("payloads".into()),
                archive_bucket: Some("archive".into()),
                archive_prefix: "a/".into(),
            }
        );
        let r = resources_from(&AwsTarget::default(), Some(&outputs())).unwrap();
        assert_eq!(r.archive_prefix, DEFAULT_ARCHIVE_PREFIX);
    }

    #[test]
    fn a_stack_without_the_outputs_is_named_with_the_missing_output() {
        let mut o = outputs();
        o.remove(OUTPUT_QUEUE_URL);
        let target = AwsTarget {
            stack: Some("web".into()),
            ..Default::default()
        };
        let e = resources_from(&target, Some(&o)).unwrap_err().to_string();
        assert!(
            e.contains("stack web has no output EventsQueueUrl: is it a Doorbell stack?"),
            "{e}"
        );
        let e = resources_from(&AwsTarget::default(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--stack NAME"), "{e}");
    }

    #[test]
    fn queue_names_are_the_last_url_segment() {
        assert_eq!(
            queue_name("https://sqs.us-east-1.amazonaws.com/123456789012/doorbell-Events-x"),
            "doorbell-Events-x"
        );
        assert_eq!(queue_name("http://127.0.0.1:5000/123/q.fifo/"), "q.fifo");
    }

    #[test]
    fn periods_cover_the_window_in_allowed_steps() {
        assert_eq!(period_covering(1), 60);
        assert_eq!(period_covering(60), 60);
        assert_eq!(period_covering(61), 120);
        assert_eq!(period_covering(301), 600);
        assert_eq!(period_covering(3600), 3600);
        assert_eq!(period_covering(3601), 7200);
        assert_eq!(period_covering(86_400), 86_400);
    }

    fn series(name: &str, dims: &[(&str, &str)]) -> Metric {
        let mut b = Metric::builder()
            .namespace(metrics::NAMESPACE)
            .metric_name(name);
        for (k, v) in dims {
            b = b.dimensions(Dimension::builder().name(*k).value(*v).build());
        }
        b.build()
    }

    #[test]
    fn one_dimension_set_is_read_per_metric_and_source() {
        let picked = one_set_per_source(vec![
            series("Processed", &[("source", "a"), ("outcome", "processed")]),
            series("Processed", &[("source", "a")]),
            series("Failed", &[("source", "a"), ("outcome", "handler_failed")]),
            // Listed twice (dimensions in another order): read once.
            series("Failed", &[("outcome", "handler_failed"), ("source", "a")]),
            series("Failed", &[("source", "a"), ("outcome", "bad_envelope")]),
            series("Received", &[("source", "a")]),
        ]);
        let got: Vec<(String, EventStatus, usize)> = picked
            .iter()
            .map(|(s, st, m)| (s.clone(), *st, m.dimensions().len()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), EventStatus::Processed, 1),
                ("a".into(), EventStatus::Failed, 2),
                ("a".into(), EventStatus::Failed, 2),
            ]
        );
    }
}
