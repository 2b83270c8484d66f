//! The archive's reader in AWS: the objects Firehose delivered to the archive bucket.
//!
//! Layouts ([`ArchiveLayout`]), under a prefix (`archive/` in the stack):
//! - [`ArchiveLayout::Partitioned`] (the stack's): `{prefix}date=YYYY-MM-DD/hour=HH/`, from the
//!   stream's custom prefix `archive/date=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/`;
//! - [`ArchiveLayout::FirehoseDefault`]: `{prefix}YYYY/MM/DD/HH/`, what Firehose writes without
//!   a custom prefix (and what moto writes whatever the prefix says).
//!
//! Both hours are UTC and name when Firehose *received* the record, which is at or after the
//! envelope's `received_at` (the worker archives after ingest received the delivery). Objects
//! are JSON Lines, one envelope a line, GZIP-compressed (recognised by the gzip magic bytes) or
//! plain.
//!
//! [`S3ArchiveReader::list`] for a window `[since, until)` on `received_at` lists the hour
//! prefixes from `since`'s hour to `until`'s hour **plus one** (delivery lag: the stream's
//! buffer interval), newest first, reads every object in them, keeps the envelopes
//! [`ArchiveQuery::matches`], and returns them through [`super::distinct_newest_first`] and
//! the query's limit. `until` defaults to now; `since` to now minus the retention (default
//! [`super::DEFAULT_RETENTION_DAYS`], the bucket's lifecycle rule), so a query by key or event
//! id alone looks through the whole retention. No hour before the retention is listed: its
//! objects have expired. With a limit, reading stops at the first hour older than the newest
//! `limit` matches already found (nothing older can displace them).
//!
//! **Cost:** reading is O(objects in the window): one `ListObjectsV2` per hour prefix (and per
//! 1,000 objects) and one `GetObject` per object. That suits the CLI (`doorbell events`,
//! `replay`) over hours or days; at scale, query the same prefix with Athena, partition
//! projection on `date` and `hour` (README, "Archive").

use std::io::BufRead;
use std::sync::Arc;

use aws_sdk_s3::error::DisplayErrorContext;
use futures::stream::{self, StreamExt};

use super::{Archive, ArchiveError, ArchiveQuery, DEFAULT_RETENTION_DAYS, distinct_newest_first};
use crate::clock::{Clock, SystemClock, rfc3339_ms};
use crate::envelope::Envelope;

/// One hour, ms.
pub const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// The archive prefix the stack's stream delivers under.
pub const DEFAULT_PREFIX: &str = "archive/";
/// Hour prefixes listed at once.
const LIST_CONCURRENCY: usize = 16;
/// Objects read at once.
const GET_CONCURRENCY: usize = 8;
/// How far `received_at` may be ahead of Firehose's arrival time (clocks of two services), ms:
/// the early stop keeps this margin.
const CLOCK_SKEW_MS: i64 = 60_000;

/// How delivered objects are laid out under the prefix. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveLayout {
    /// `date=YYYY-MM-DD/hour=HH/` (Hive-style partitions, for Athena).
    #[default]
    Partitioned,
    /// `YYYY/MM/DD/HH/` (Firehose's default).
    FirehoseDefault,
}

/// The path of the hour holding `epoch_ms` (UTC) in `layout`, ending in `/`.
pub fn hour_path(layout: ArchiveLayout, epoch_ms: i64) -> String {
    // `2023-11-14T22:13:20.123Z`
    let t = rfc3339_ms(epoch_ms);
    let (date, hour) = (&t[0..10], &t[11..13]);
    match layout {
        ArchiveLayout::Partitioned => format!("date={date}/hour={hour}/"),
        ArchiveLayout::FirehoseDefault => {
            format!("{}/{}/{}/{hour}/", &t[0..4], &t[5..7], &t[8..10])
        }
    }
}

/// The envelopes in one object's bytes (GZIP or plain JSON Lines) that satisfy `query`.
/// Returns them and how many lines were not valid envelopes (skipped, so one bad line does not
/// hide the rest).
///
/// # Errors
/// The text of a decompression error (a truncated or corrupt GZIP object).
pub fn parse_object(bytes: &[u8], query: &ArchiveQuery) -> Result<(Vec<Envelope>, usize), String> {
    let reader: Box<dyn BufRead> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
            bytes,
        )))
    } else {
        Box::new(bytes)
    };
    let (mut found, mut bad) = (Vec::new(), 0usize);
    for line in reader.split(b'\n') {
        let line = line.map_err(|e| e.to_string())?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match std::str::from_utf8(&line)
            .ok()
            .and_then(|t| Envelope::parse(t).ok())
        {
            Some(mut e) if query.matches(&e) => {
                if query.without_bodies {
                    e.body = None;
                    e.body_base64 = None;
                }
                found.push(e)
            }
            Some(_) => {}
            None => bad += 1,
        }
    }
    Ok((found, bad))
}

/// Reads the archive bucket. See the module docs.
#[derive(Debug, Clone)]
pub struct S3ArchiveReader {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    layout: ArchiveLayout,
    retention_days: u32,
    clock: Arc<dyn Clock>,
}

fn unavailable(message: impl Into<String>) -> ArchiveError {
    ArchiveError::Unavailable {
        operation: "list",
        message: message.into(),
    }
}

impl S3ArchiveReader {
    /// The objects under `prefix` (`archive/` in the stack) in `bucket`, through `client`;
    /// [`ArchiveLayout::Partitioned`], [`DEFAULT_RETENTION_DAYS`], the system clock.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
            layout: ArchiveLayout::Partitioned,
            retention_days: DEFAULT_RETENTION_DAYS,
            clock: Arc::new(SystemClock),
        }
    }

    /// A client built from `config`; with a custom endpoint (an emulator) it addresses buckets
    /// by path.
    pub fn from_conf(
        config: &aws_types::SdkConfig,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Self::new(aws_sdk_s3::Client::from_conf(conf), bucket, prefix)
    }

    /// Reads `layout` instead of [`ArchiveLayout::Partitioned`].
    pub fn with_layout(mut self, layout: ArchiveLayout) -> Self {
        self.layout = layout;
        self
    }

    /// The bucket's retention, **days** (the stack's `ArchiveRetentionDays`; at least 1).
    pub fn with_retention_days(mut self, days: u32) -> Self {
        self.retention_days = days.max(1);
        self
    }

    /// Reads "now" from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The hour prefixes a query reads at `now_ms`, newest first (full keys: prefix, layout).
    pub fn hour_prefixes(&self, query: &ArchiveQuery, now_ms: i64) -> Vec<String> {
        self.hours(query, now_ms)
            .into_iter()
            .map(|h| format!("{}{}", self.prefix, hour_path(self.layout, h)))
            .collect()
    }

    /// The starts (epoch ms) of the hours a query reads at `now_ms`, newest first.
    fn hours(&self, query: &ArchiveQuery, now_ms: i64) -> Vec<i64> {
        let floor = |t: i64| t.div_euclid(HOUR_MS) * HOUR_MS;
        let until = query.until_ms.unwrap_or(now_ms).min(now_ms);
        // `until` is exclusive: its own hour counts only when the window reaches into it.
        let last = floor(until - 1) + HOUR_MS;
        let retention_start = now_ms - (i64::from(self.retention_days) + 1) * DAY_MS;
        let since = query
            .since_ms
            .unwrap_or(until - i64::from(self.retention_days) * DAY_MS)
            .max(retention_start);
        if since >= until {
            return Vec::new();
        }
        let first = floor(since);
        (0..)
            .map(|i| last - i * HOUR_MS)
            .take_while(|h| *h >= first)
            .collect()
    }

    /// Every object key under `prefix` (all pages).
    async fn keys(&self, prefix: String) -> Result<Vec<String>, ArchiveError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unavailable(DisplayErrorContext(e).to_string()))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }

    /// The matching envelopes in one object (none if it expired since it was listed).
    async fn read(&self, key: String, query: ArchiveQuery) -> Result<Vec<Envelope>, ArchiveError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(unavailable(DisplayErrorContext(e).to_string())),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .into_bytes();
        let (found, bad) = tokio::task::spawn_blocking(move || parse_object(&bytes, &query))
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(|e| unavailable(format!("object {key}: {e}")))?;
        if bad > 0 {
            tracing::warn!(key = %key, lines = bad, "archive object has lines that are not envelopes; skipped");
        }
        Ok(found)
    }

    /// [`Archive::list`] at `now_ms`.
    ///
    /// # Errors
    /// [`ArchiveError::Unavailable`] when S3 fails or an object is not readable.
    pub async fn list_at(
        &self,
        query: &ArchiveQuery,
        now_ms: i64,
    ) -> Result<Vec<Envelope>, ArchiveError> {
        let hours = self.hours(query, now_ms);
        let mut found: Vec<Envelope> = Vec::new();
        for chunk in hours.chunks(LIST_CONCURRENCY) {
            let listed: Vec<Result<Vec<String>, ArchiveError>> = stream::iter(chunk.to_vec())
                .map(|h| self.keys(format!("{}{}", self.prefix, hour_path(self.layout, h))))
                .buffered(LIST_CONCURRENCY)
                .collect()
                .await;
            let mut keys = Vec::new();
            for k in listed {
                keys.extend(k?);
            }
            let read: Vec<Result<Vec<Envelope>, ArchiveError>> = stream::iter(keys)
                .map(|k| self.read(k, query.clone()))
                .buffer_unordered(GET_CONCURRENCY)
                .collect()
                .await;
            for r in read {
                found.extend(r?);
            }
            found = distinct_newest_first(found);
            // Objects in older hours hold envelopes received before the oldest hour read.
            let oldest = chunk.last().copied().unwrap_or(i64::MIN);
            if query.limit > 0
                && found
                    .iter()
                    .filter(|e| e.received_at_ms().unwrap_or(0) >= oldest + CLOCK_SKEW_MS)
                    .count()
                    >= query.limit
            {
                break;
            }
        }
        if query.limit > 0 {
            found.truncate(query.limit);
        }
        Ok(found)
    }
}

#[async_trait::async_trait]
impl Archive for S3ArchiveReader {
    async fn put(&self, _envelopes: &[Envelope], _now_ms: i64) -> Result<(), ArchiveError> {
        Err(ArchiveError::Unavailable {
            operation: "put",
            message: "the S3 archive reader only reads: write through FirehoseArchive (AwsArchive.writer)".into(),
        })
    }

    async fn list(&self, query: &ArchiveQuery) -> Result<Vec<Envelope>, ArchiveError> {
        self.list_at(query, self.clock.now_ms()).await
    }
}

/// The archive in AWS: Firehose to write, S3 to read; either may be absent (the worker only
/// writes, the CLI only reads).
#[derive(Debug, Clone, Default)]
pub struct AwsArchive {
    /// Writes [`Archive::put`].
    pub writer: Option<super::FirehoseArchive>,
    /// Answers [`Archive::list`].
    pub reader: Option<S3ArchiveReader>,
}

#[async_trait::async_trait]
impl Archive for AwsArchive {
    async fn put(&self, envelopes: &[Envelope], now_ms: i64) -> Result<(), ArchiveError> {
        match &self.writer {
            Some(w) => w.put(envelopes, now_ms).await,
            None => Err(ArchiveError::Unavailable {
                operation: "put",
                message: "no archive delivery stream is configured (DOORBELL_ARCHIVE_STREAM)"
                    .into(),
            }),
        }
    }

    async fn list(&self, query: &ArchiveQuery) -> Result<Vec<Envelope>, ArchiveError> {
        match &self.reader {
            Some(r) => r.list(query).await,
            None => Err(ArchiveError::Unavailable {
                operation: "list",
                message: "no archive bucket is configured to read from (the stack's ArchiveBucketName output)".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_123; // 2023-11-14T22:13:20.123Z

    fn reader() -> S3ArchiveReader {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build();
        S3ArchiveReader::new(aws_sdk_s3::Client::from_conf(conf), "b", "archive/")
    }

    #[tokio::test]
    async fn an_aws_archive_without_a_writer_or_reader_says_which_is_missing() {
        let a = AwsArchive::default();
        let e = a.put(&[], 0).await.unwrap_err().to_string();
        assert!(e.contains("DOORBELL_ARCHIVE_STREAM"), "{e}");
        let e = a
            .list(&ArchiveQuery::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("ArchiveBucketName"), "{e}");
    }

    #[test]
    fn hour_paths_in_both_layouts() {
        assert_eq!(
            hour_path(ArchiveLayout::Partitioned, T),
            "date=2023-11-14/hour=22/"
        );
        assert_eq!(
            hour_path(ArchiveLayout::FirehoseDefault, T),
            "2023/11/14/22/"
        );
        assert_eq!(
            hour_path(ArchiveLayout::Partitioned, 0),
            "date=1970-01-01/hour=00/"
        );
    }

    #[test]
    fn a_window_reads_its_hours_and_the_next_newest_first() {
        let q = ArchiveQuery {
            since_ms: Some(T - HOUR_MS),
            until_ms: Some(T + 10),
            ..Default::default()
        };
        assert_eq!(
            reader().hour_prefixes(&q, T + 5 * HOUR_MS),
            vec![
                "archive/date=2023-11-14/hour=23/",
                "archive/date=2023-11-14/hour=22/",
                "archive/date=2023-11-14/hour=21/",
            ]
        );
        // until defaults to now, and is never later than now.
        let q = ArchiveQuery {
            since_ms: Some(T),
            ..Default::default()
        };
        assert_eq!(reader().hour_prefixes(&q, T + 1).len(), 2);
        let q = ArchiveQuery {
            since_ms: Some(T),
            until_ms: Some(T + 100 * HOUR_MS),
            ..Default::default()
        };
        assert_eq!(reader().hour_prefixes(&q, T + 1).len(), 2);
        // An empty window reads nothing.
        let q = ArchiveQuery {
            since_ms: Some(T),
            until_ms: Some(T),
            ..Default::default()
        };
        assert!(reader().hour_prefixes(&q, T).is_empty());
    }

    #[test]
    fn a_key_alone_looks_back_the_retention_and_never_before_it() {
        let q = ArchiveQuery {
            key: Some("stripe#evt_1".into()),
            ..Default::default()
        };
        // 30 days of hours, plus the current hour and the next.
        assert_eq!(reader().hour_prefixes(&q, T).len(), 30 * 24 + 2);
        assert_eq!(
            reader().with_retention_days(2).hour_prefixes(&q, T).len(),
            2 * 24 + 2
        );
        let q = ArchiveQuery {
            since_ms: Some(0),
            ..Default::default()
        };
        assert_eq!(reader().hour_prefixes(&q, T).len(), 31 * 24 + 2);
    }

    #[test]
    fn parses_plain_and_gzip_json_lines_and_skips_bad_lines() {
        let e = |id: &str| {
            let body = format!("{{\"id\":\"{id}\"}}");
            Envelope {
                v: 1,
                source: "s".into(),
                provider: "stripe".into(),
                event_id: id.into(),
                event_type: "t".into(),
                idempotency_key: format!("s#{id}"),
                received_at: rfc3339_ms(T),
                occurred_at: None,
                content_type: None,
                body_sha256: crate::envelope::sha256_hex(body.as_bytes()),
                body: Some(body),
                body_base64: None,
                headers: Default::default(),
                replay_id: None,
            }
        };
        let mut text = String::new();
        for id in ["a", "b"] {
            text.push_str(&e(id).to_json());
            text.push('\n');
        }
        text.push_str("not json\n\n");
        let q = ArchiveQuery::default();
        let (found, bad) = parse_object(text.as_bytes(), &q).unwrap();
        assert_eq!((found, bad), (vec![e("a"), e("b")], 1));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let only_b = ArchiveQuery {
            event_id: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(parse_object(&gz, &only_b).unwrap(), (vec![e("b")], 1));
        assert!(parse_object(&gz[..gz.len() / 2], &q).is_err());
    }
}
