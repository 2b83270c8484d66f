//! The archive's writer in AWS: Amazon Data Firehose, delivering to the archive bucket.
//!
//! Each [`Archive::put`] sends the batch's envelopes with one `PutRecordBatch` call. The
//! envelopes are written as JSON Lines (each envelope's JSON followed by `\n`) and packed into
//! as few Firehose records as they fit in: Firehose concatenates the records it delivers, so
//! the S3 objects are JSON Lines whatever the packing, and Athena and [`super::S3ArchiveReader`]
//! read them line by line. A line is never split across records.
//!
//! **Why pack:** Firehose bills ingestion per record, each rounded **up** to the next 5 KB
//! ("a 3KB record is billed as 5KB, a 12KB record is billed as 15KB";
//! <https://aws.amazon.com/firehose/pricing/>, Direct PUT ingestion, $0.029 per GB for the first
//! 500 TB a month in us-east-1). One record per envelope would bill a 1.5 KB Stripe event as
//! 5 KB; a batch of ten packed into one 15 KB record is billed 15 KB instead of 50 KB.
//!
//! Limits (Firehose quotas, which cannot be raised; the `PutRecordBatch` API reference): a
//! record's data is at most [`MAX_RECORD_BYTES`] (1,000 KiB, before base64), a call at most
//! [`MAX_CALL_RECORDS`] records and [`MAX_CALL_BYTES`] (4 MiB). A batch is split into several
//! calls only when it exceeds them ([`pack_records`], [`group_calls`]).
//!
//! Partial failures: a call can succeed with `FailedPutCount > 0` (throttling, an internal
//! error). Only the failed records are sent again, up to [`PUT_ATTEMPTS`] tries in all, then the
//! put fails with [`ArchiveError::Unavailable`] (the worker then retries the batch; a record
//! written twice is listed once, see [`super::distinct_newest_first`]).
//!
//! An envelope whose line alone exceeds 1,000 KiB (a body near the ingest limit of 10 MiB)
//! cannot travel through Firehose. With [`FirehoseArchive::with_oversize_bucket`] it is written
//! directly to the archive bucket as its own GZIP object, under the hour prefix of the layout
//! the stream delivers to, where the reader finds it beside Firehose's objects; without it such
//! a put fails with [`ArchiveError::Unavailable`], naming the size.

use std::io::Write;
use std::time::Duration;

use aws_sdk_firehose::error::DisplayErrorContext;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;

use super::s3::{ArchiveLayout, hour_path};
use super::{Archive, ArchiveError, ArchiveQuery};
use crate::envelope::{Envelope, sha256_hex};

/// Largest Firehose record, **bytes** of data before base64: 1,000 KiB.
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// Most records in one `PutRecordBatch` call.
pub const MAX_CALL_RECORDS: usize = 500;
/// Most data in one `PutRecordBatch` call, **bytes**: 4 MiB.
pub const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;
/// Tries of a record that Firehose reports as failed (the first send included).
pub const PUT_ATTEMPTS: u32 = 3;

/// How records are packed and grouped into calls. [`RecordLimits::FIREHOSE`] is Firehose's;
/// tests use smaller ones to exercise the splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// Largest record, bytes.
    pub record_bytes: usize,
    /// Most records a call.
    pub call_records: usize,
    /// Most bytes a call (the sum of its records' data).
    pub call_bytes: usize,
}

impl RecordLimits {
    /// Firehose's quotas.
    pub const FIREHOSE: Self = Self {
        record_bytes: MAX_RECORD_BYTES,
        call_records: MAX_CALL_RECORDS,
        call_bytes: MAX_CALL_BYTES,
    };
}

impl Default for RecordLimits {
    fn default() -> Self {
        Self::FIREHOSE
    }
}

/// Each envelope's JSON followed by `\n`, in order.
pub fn json_lines(envelopes: &[Envelope]) -> Vec<Vec<u8>> {
    envelopes
        .iter()
        .map(|e| {
            let mut line = e.to_json().into_bytes();
            line.push(b'\n');
            line
        })
        .collect()
}

/// Lines packed into records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Packed {
    /// Records, each the concatenation of whole lines, in order, none over the record limit.
    pub records: Vec<Vec<u8>>,
    /// The lines (by index) that alone exceed the record limit, in order.
    pub oversized: Vec<usize>,
}

/// Packs `lines` into as few records as the limit allows: each line goes into the current
/// record while it fits, else starts the next. Lines over the limit are set aside
/// ([`Packed::oversized`]). Order is kept.
pub fn pack_records(lines: &[Vec<u8>], limits: &RecordLimits) -> Packed {
    let mut packed = Packed::default();
    let mut current: Vec<u8> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.len() > limits.record_bytes {
            packed.oversized.push(i);
            continue;
        }
        if !current.is_empty() && current.len() + line.len() > limits.record_bytes {
            packed.records.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(line);
    }
    if !current.is_empty() {
        packed.records.push(current);
    }
    packed
}

/// Groups records into calls of at most `call_records` records and `call_bytes` bytes, in
/// order; one call when they fit.
pub fn group_calls(records: Vec<Vec<u8>>, limits: &RecordLimits) -> Vec<Vec<Vec<u8>>> {
    let mut calls: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut bytes = 0usize;
    for r in records {
        let full = calls
            .last()
            .is_none_or(|c| c.len() >= limits.call_records || bytes + r.len() > limits.call_bytes);
        if full {
            calls.push(Vec::new());
            bytes = 0;
        }
        bytes += r.len();
        if let Some(c) = calls.last_mut() {
            c.push(r);
        }
    }
    calls
}

/// Where oversized envelopes go: the bucket Firehose delivers to, under the same prefix and
/// layout.
#[derive(Debug, Clone)]
struct OversizeBucket {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    layout: ArchiveLayout,
}

/// The writer: a Firehose delivery stream (Direct PUT). See the module docs.
#[derive(Debug, Clone)]
pub struct FirehoseArchive {
    client: aws_sdk_firehose::Client,
    stream: String,
    limits: RecordLimits,
    oversize: Option<OversizeBucket>,
    retry_delay: Duration,
}

fn unavailable(operation: &'static str, message: impl Into<String>) -> ArchiveError {
    ArchiveError::Unavailable {
        operation,
        message: message.into(),
    }
}

impl FirehoseArchive {
    /// The delivery stream named `stream`, through `client`.
    pub fn new(client: aws_sdk_firehose::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
            limits: RecordLimits::FIREHOSE,
            oversize: None,
            retry_delay: Duration::from_millis(100),
        }
    }

    /// A client built from `config`.
    pub fn from_conf(config: &aws_types::SdkConfig, stream: impl Into<String>) -> Self {
        Self::new(aws_sdk_firehose::Client::new(config), stream)
    }

    /// The writer as the stack deploys it: the delivery stream `stream`, and oversized
    /// envelopes written to [`super::DEFAULT_PREFIX`] in `archive_bucket` (when given) in the
    /// [`ArchiveLayout::Partitioned`] layout the stream delivers in.
    pub fn for_stack(
        config: &aws_types::SdkConfig,
        stream: impl Into<String>,
        archive_bucket: Option<String>,
    ) -> Self {
        let writer = Self::from_conf(config, stream);
        match archive_bucket {
            Some(bucket) => {
                let conf = aws_sdk_s3::config::Builder::from(config)
                    .force_path_style(config.endpoint_url().is_some())
                    .build();
                writer.with_oversize_bucket(
                    aws_sdk_s3::Client::from_conf(conf),
                    bucket,
                    super::DEFAULT_PREFIX,
                    ArchiveLayout::Partitioned,
                )
            }
            None => writer,
        }
    }

    /// Writes envelopes too large for a Firehose record to `bucket` (through `client`) as
    /// `{prefix}{hour}/oversize-{sha256 of the line}.json.gz`, GZIP JSON Lines of one line, with
    /// `{hour}` in `layout` for the time of the put: the prefix and layout the stream delivers
    /// to (`archive/` and [`ArchiveLayout::Partitioned`] in the stack).
    pub fn with_oversize_bucket(
        mut self,
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        layout: ArchiveLayout,
    ) -> Self {
        self.oversize = Some(OversizeBucket {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
            layout,
        });
        self
    }

    /// Packs with `limits` instead of Firehose's quotas (tests use smaller ones).
    pub fn with_limits(mut self, limits: RecordLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The pause before resending failed records, doubled on each further try; default 100 ms.
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// The delivery stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Sends one call's records; resends those Firehose reports as failed.
    async fn send_call(&self, records: Vec<Vec<u8>>) -> Result<(), ArchiveError> {
        let mut pending = records;
        let mut last_error = String::new();
        for attempt in 0..PUT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(self.retry_delay * 2u32.pow(attempt - 1)).await;
            }
            let batch: Vec<Record> = pending
                .iter()
                .map(|d| {
                    Record::builder()
                        .data(Blob::new(d.clone()))
                        .build()
                        .map_err(|e| unavailable("put", e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            let out = self
                .client
                .put_record_batch()
                .delivery_stream_name(&self.stream)
                .set_records(Some(batch))
                .send()
                .await
                .map_err(|e| unavailable("put", DisplayErrorContext(e).to_string()))?;
            let answers = out.request_responses();
            if answers.len() != pending.len() {
                return Err(unavailable(
                    "put",
                    format!(
                        "Firehose answered {} entries for {} records",
                        answers.len(),
                        pending.len()
                    ),
                ));
            }
            if out.failed_put_count() == 0 {
                return Ok(());
            }
            let mut failed = Vec::new();
            for (data, answer) in pending.into_iter().zip(answers) {
                if let Some(code) = answer.error_code() {
                    last_error = format!("{code}: {}", answer.error_message().unwrap_or(""));
                    failed.push(data);
                }
            }
            tracing::warn!(
                stream = %self.stream,
                failed = failed.len(),
                attempt = attempt + 1,
                error = %last_error,
                "Firehose refused some archive records; resending them"
            );
            pending = failed;
            if pending.is_empty() {
                return Ok(());
            }
        }
        Err(unavailable(
            "put",
            format!(
                "{} of the batch's Firehose records still failed after {PUT_ATTEMPTS} tries ({last_error})",
                pending.len()
            ),
        ))
    }

    /// Writes one oversized line as its own GZIP object.
    async fn put_oversized(&self, line: &[u8], now_ms: i64) -> Result<(), ArchiveError> {
        let Some(o) = &self.oversize else {
            return Err(unavailable(
                "put",
                format!(
                    "an envelope of {} bytes exceeds Firehose's record limit of {} bytes and no \
                     bucket is configured for oversized envelopes",
                    line.len(),
                    self.limits.record_bytes
                ),
            ));
        };
        let key = format!(
            "{}{}oversize-{}.json.gz",
            o.prefix,
            hour_path(o.layout, now_ms),
            sha256_hex(line)
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(line)
            .map_err(|e| unavailable("put", e.to_string()))?;
        let bytes = gz.finish().map_err(|e| unavailable("put", e.to_string()))?;
        o.client
            .put_object()
            .bucket(&o.bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .content_encoding("gzip")
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("put", aws_sdk_s3::error::DisplayErrorContext(e).to_string()))
    }
}

#[async_trait::async_trait]
impl Archive for FirehoseArchive {
    async fn put(&self, envelopes: &[Envelope], now_ms: i64) -> Result<(), ArchiveError> {
        if envelopes.is_empty() {
            return Ok(());
        }
        let lines = json_lines(envelopes);
        let packed = pack_records(&lines, &self.limits);
        for i in &packed.oversized {
            self.put_oversized(&lines[*i], now_ms).await?;
        }
        for call in group_calls(packed.records, &self.limits) {
            self.send_call(call).await?;
        }
        Ok(())
    }

    async fn list(&self, _query: &ArchiveQuery) -> Result<Vec<Envelope>, ArchiveError> {
        Err(unavailable(
            "list",
            "the Firehose archive only writes: list through S3ArchiveReader (AwsArchive.reader)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Vec<u8> {
        let mut l = vec![b'x'; n - 1];
        l.push(b'\n');
        l
    }

    #[test]
    fn a_batch_that_fits_is_one_record_and_one_call() {
        let lines: Vec<_> = (0..100).map(|_| line(2_000)).collect();
        let packed = pack_records(&lines, &RecordLimits::FIREHOSE);
        assert_eq!(packed.records.len(), 1);
        assert_eq!(packed.records[0], lines.concat());
        assert!(packed.oversized.is_empty());
        assert_eq!(
            group_calls(packed.records, &RecordLimits::FIREHOSE).len(),
            1
        );
    }

    #[test]
    fn records_fill_up_to_exactly_the_limit_and_never_split_a_line() {
        let limits = RecordLimits::FIREHOSE;
        // 1,000 lines of 1,024 bytes fill one record exactly; one more byte starts a second.
        let mut lines: Vec<_> = (0..1_000).map(|_| line(1_024)).collect();
        let packed = pack_records(&lines, &limits);
        assert_eq!(packed.records.len(), 1);
        assert_eq!(packed.records[0].len(), MAX_RECORD_BYTES);
        lines.push(line(1));
        let packed = pack_records(&lines, &limits);
        assert_eq!(
            packed.records.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_RECORD_BYTES, 1]
        );
        // 300 KB lines: three to a record.
        let lines: Vec<_> = (0..7).map(|_| line(300_000)).collect();
        let packed = pack_records(&lines, &limits);
        assert_eq!(
            packed.records.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![900_000, 900_000, 300_000]
        );
        assert!(packed.records.iter().all(|r| r.ends_with(b"\n")));
    }

    #[test]
    fn a_line_over_the_record_limit_is_set_aside_and_the_rest_keep_their_order() {
        let lines = vec![
            line(10),
            line(MAX_RECORD_BYTES + 1),
            line(20),
            line(MAX_RECORD_BYTES),
        ];
        let packed = pack_records(&lines, &RecordLimits::FIREHOSE);
        assert_eq!(packed.oversized, vec![1]);
        assert_eq!(
            packed.records,
            vec![[line(10), line(20)].concat(), line(MAX_RECORD_BYTES)]
        );
    }

    #[test]
    fn a_call_holds_at_most_500_records() {
        let limits = RecordLimits {
            record_bytes: 10,
            ..RecordLimits::FIREHOSE
        };
        let lines: Vec<_> = (0..1_201).map(|_| line(10)).collect();
        let packed = pack_records(&lines, &limits);
        assert_eq!(packed.records.len(), 1_201);
        let calls = group_calls(packed.records, &limits);
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![500, 500, 201]
        );
    }

    #[test]
    fn a_call_holds_at_most_4_mib() {
        // Four full records are 4,096,000 bytes, under 4 MiB (4,194,304); a fifth is not.
        let records: Vec<_> = (0..9).map(|_| line(MAX_RECORD_BYTES)).collect();
        let calls = group_calls(records, &RecordLimits::FIREHOSE);
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 1]
        );
        for c in &calls {
            assert!(c.iter().map(Vec::len).sum::<usize>() <= MAX_CALL_BYTES);
        }
    }

    proptest::proptest! {
        /// Whatever the sizes: records hold whole lines in order, none over the limit, no two
        /// neighbours could have been one record, and calls keep both call limits.
        #[test]
        fn packing_keeps_every_line_in_order_within_the_limits(
            sizes in proptest::collection::vec(1usize..400, 0..200),
            record_bytes in 50usize..1_000,
            call_records in 1usize..8,
            call_bytes in 1_000usize..3_000,
        ) {
            let limits = RecordLimits { record_bytes, call_records, call_bytes };
            let lines: Vec<Vec<u8>> = sizes.iter().map(|n| line(*n)).collect();
            let packed = pack_records(&lines, &limits);
            let kept: Vec<u8> = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| !packed.oversized.contains(i))
                .flat_map(|(_, l)| l.clone())
                .collect();
            proptest::prop_assert_eq!(packed.records.concat(), kept);
            for (i, l) in lines.iter().enumerate() {
                proptest::prop_assert_eq!(packed.oversized.contains(&i), l.len() > record_bytes);
            }
            for r in &packed.records {
                proptest::prop_assert!(!r.is_empty() && r.len() <= record_bytes && r.ends_with(b"\n"));
            }
            for pair in packed.records.windows(2) {
                let first_line = pair[1].iter().position(|b| *b == b'\n').unwrap() + 1;
                proptest::prop_assert!(pair[0].len() + first_line > record_bytes);
            }
            let all = packed.records.clone();
            let calls = group_calls(packed.records, &limits);
            proptest::prop_assert_eq!(calls.concat(), all);
            for c in &calls {
                proptest::prop_assert!(!c.is_empty() && c.len() <= call_records);
                proptest::prop_assert!(
                    c.len() == 1 || c.iter().map(Vec::len).sum::<usize>() <= call_bytes
                );
            }
        }
    }

    #[test]
    fn an_empty_batch_is_no_record_and_no_call() {
        let packed = pack_records(&[], &RecordLimits::FIREHOSE);
        assert!(packed.records.is_empty());
        assert!(group_calls(packed.records, &RecordLimits::FIREHOSE).is_empty());
    }
}
