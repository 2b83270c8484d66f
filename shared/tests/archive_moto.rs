//! The AWS archive against a moto server (`./scripts/test` starts one): [`FirehoseArchive`]
//! writes through moto's Firehose, which delivers to moto's S3, and [`S3ArchiveReader`] reads
//! the objects back. moto writes each `PutRecordBatch` call as one plain object under
//! `{prefix}YYYY/MM/DD/HH/` (Firehose's default layout, the hour of the call) and ignores
//! compression and `!{timestamp:…}` prefixes, so the round trips read
//! [`ArchiveLayout::FirehoseDefault`]; the partitioned, GZIP layout the stack's stream writes is
//! read from objects written here as Firehose writes them.

use std::io::Write;
use std::sync::Arc;

use aws_sdk_firehose::types::{DeliveryStreamType, ExtendedS3DestinationConfiguration};
use doorbell::archive::{
    Archive, ArchiveError, ArchiveLayout, ArchiveQuery, FirehoseArchive, HOUR_MS, RecordLimits,
    S3ArchiveReader,
};
use doorbell::clock::ManualClock;
use doorbell::config::{Provider, SourceConfig};
use doorbell::envelope::Envelope;
use doorbell::secret::Secret;
use doorbell::testing::{self, RequestCounter};
use doorbell::verify::{Dedupe, Verified};

const MINUTE_MS: i64 = 60_000;

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn envelope(source: &str, provider: Provider, id: &str, body: &[u8], at_ms: i64) -> Envelope {
    let src = SourceConfig::new(source, provider, vec![Secret::new("s")]);
    let v = Verified {
        event_id: id.into(),
        event_type: "test.event".into(),
        occurred_at_ms: Some(at_ms - 1_000),
        dedupe: if provider == Provider::Github {
            Dedupe::BodyDigest
        } else {
            Dedupe::EventId
        },
        reply: None,
        headers: vec![("x-test", "1".into())],
    };
    Envelope::new(&src, v, body, Some("application/json"), at_ms)
}

struct Moto {
    config: aws_types::SdkConfig,
    s3: aws_sdk_s3::Client,
    bucket: String,
    stream: String,
    firehose_calls: RequestCounter,
}

impl Moto {
    /// A bucket, and a Direct PUT stream delivering to it under `archive/`.
    async fn new() -> Self {
        let config = testing::sdk_config().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        let bucket = testing::unique("doorbell-archive").to_lowercase();
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let stream = testing::unique("doorbell-archive");
        aws_sdk_firehose::Client::new(&config)
            .create_delivery_stream()
            .delivery_stream_name(&stream)
            .delivery_stream_type(DeliveryStreamType::DirectPut)
            .extended_s3_destination_configuration(
                ExtendedS3DestinationConfiguration::builder()
                    .role_arn("arn:aws:iam::123456789012:role/doorbell-archive-delivery")
                    .bucket_arn(format!("arn:aws:s3:::{bucket}"))
                    .prefix("archive/")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("create delivery stream");
        Self {
            config,
            s3,
            bucket,
            stream,
            firehose_calls: RequestCounter::default(),
        }
    }

    fn writer(&self) -> FirehoseArchive {
        let conf = aws_sdk_firehose::config::Builder::from(&self.config)
            .interceptor(self.firehose_calls.clone())
            .build();
        FirehoseArchive::new(aws_sdk_firehose::Client::from_conf(conf), &self.stream)
    }

    fn reader(&self) -> S3ArchiveReader {
        S3ArchiveReader::new(self.s3.clone(), &self.bucket, "archive/")
            .with_layout(ArchiveLayout::FirehoseDefault)
    }

    async fn keys(&self) -> Vec<String> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    fn puts(&self) -> u64 {
        self.firehose_calls.get("Firehose.PutRecordBatch")
    }
}

fn since(ms: i64) -> ArchiveQuery {
    ArchiveQuery {
        since_ms: Some(ms),
        ..Default::default()
    }
}

#[tokio::test]
async fn firehose_to_s3_round_trip_keeps_every_body_byte_for_byte_and_lists_each_delivery_once() {
    let moto = Moto::new().await;
    let now = now_ms();
    let text = "{\n  \"id\": \"evt_a\",\n  \"d\": \"Café ☕ \\\"quoted\\\"\"\n}\n".as_bytes();
    let binary: Vec<u8> = (0..=255u8).rev().chain([0, 0xff, b'\n']).collect();
    let large: Vec<u8> = format!(
        "{{\"id\":\"evt_c\",\"pad\":\"{}\"}}",
        "0123456789abcdef".repeat(12_800)
    )
    .into_bytes();
    assert!(large.len() > 200_000);
    let sqs_unsafe = "{\"id\":\"evt_d\",\"x\":\"a\u{FFFF}b\"}".as_bytes();
    let a = envelope(
        "stripe",
        Provider::Stripe,
        "evt_a",
        text,
        now - 20 * MINUTE_MS,
    );
    let b = envelope(
        "github",
        Provider::Github,
        "d-b",
        &binary,
        now - 15 * MINUTE_MS,
    );
    let c = envelope(
        "stripe",
        Provider::Stripe,
        "evt_c",
        &large,
        now - 10 * MINUTE_MS,
    );
    let d = envelope(
        "shop",
        Provider::Stripe,
        "evt_d",
        sqs_unsafe,
        now - 5 * MINUTE_MS,
    );
    assert!(b.body_base64.is_some() && d.body_base64.is_some());

    let writer = moto.writer();
    writer.put(&[a.clone(), b.clone()], now).await.unwrap();
    writer.put(&[c.clone(), a.clone()], now).await.unwrap(); // a: a retried batch
    writer.put(std::slice::from_ref(&d), now).await.unwrap();
    assert_eq!(moto.puts(), 3, "one PutRecordBatch per batch");
    assert_eq!(
        moto.keys().await.len(),
        3,
        "moto writes one object per call"
    );

    let reader = moto.reader();
    let all = reader.list(&since(now - HOUR_MS)).await.unwrap();
    assert_eq!(all, vec![d.clone(), c.clone(), b.clone(), a.clone()]);
    for (got, body) in all.iter().zip([sqs_unsafe, &large[..], &binary[..], text]) {
        assert_eq!(got.body_bytes().unwrap().as_ref(), body);
    }

    let q = ArchiveQuery {
        source: Some("stripe".into()),
        ..since(now - HOUR_MS)
    };
    assert_eq!(reader.list(&q).await.unwrap(), vec![c.clone(), a.clone()]);
    // By key or event id alone: the reader looks back through the retention.
    let q = ArchiveQuery {
        key: Some(a.idempotency_key.clone()),
        ..Default::default()
    };
    assert_eq!(reader.list(&q).await.unwrap(), vec![a.clone()]);
    let q = ArchiveQuery {
        event_id: Some("d-b".into()),
        ..Default::default()
    };
    assert_eq!(reader.list(&q).await.unwrap(), vec![b.clone()]);
    let q = ArchiveQuery {
        since_ms: Some(now - 16 * MINUTE_MS),
        until_ms: Some(now - 7 * MINUTE_MS),
        ..Default::default()
    };
    assert_eq!(reader.list(&q).await.unwrap(), vec![c.clone(), b.clone()]);
    let q = ArchiveQuery {
        limit: 2,
        ..since(now - HOUR_MS)
    };
    assert_eq!(reader.list(&q).await.unwrap(), vec![d, c]);
}

#[tokio::test]
async fn a_batch_over_the_limits_is_split_into_several_calls_and_reads_back_whole() {
    let moto = Moto::new().await;
    let now = now_ms();
    let envelopes: Vec<Envelope> = (0..10)
        .map(|i| {
            let body = format!("{{\"id\":\"evt_{i}\",\"pad\":\"{}\"}}", "x".repeat(20_000));
            envelope(
                "stripe",
                Provider::Stripe,
                &format!("evt_{i}"),
                body.as_bytes(),
                now - (10 - i) * MINUTE_MS,
            )
        })
        .collect();
    // Two envelopes to a record, two records to a call: 5 records, 3 calls.
    let limits = RecordLimits {
        record_bytes: 50_000,
        call_records: 2,
        call_bytes: 200_000,
    };
    moto.writer()
        .with_limits(limits)
        .put(&envelopes, now)
        .await
        .unwrap();
    assert_eq!(moto.puts(), 3);
    let mut newest_first = envelopes.clone();
    newest_first.reverse();
    assert_eq!(
        moto.reader().list(&since(now - HOUR_MS)).await.unwrap(),
        newest_first
    );
}

#[tokio::test]
async fn an_envelope_over_the_record_limit_is_its_own_object_beside_the_streams() {
    let moto = Moto::new().await;
    let now = now_ms();
    let small = envelope("stripe", Provider::Stripe, "evt_s", b"{}", now - MINUTE_MS);
    let big_body = format!("{{\"pad\":\"{}\"}}", "y".repeat(150_000));
    let big = envelope(
        "stripe",
        Provider::Stripe,
        "evt_b",
        big_body.as_bytes(),
        now,
    );
    let limits = RecordLimits {
        record_bytes: 100_000,
        ..RecordLimits::FIREHOSE
    };

    let err = moto
        .writer()
        .with_limits(limits)
        .put(&[small.clone(), big.clone()], now)
        .await
        .unwrap_err();
    let ArchiveError::Unavailable { message, .. } = err;
    assert!(
        message.contains("exceeds Firehose's record limit"),
        "{message}"
    );

    let writer = moto.writer().with_limits(limits).with_oversize_bucket(
        moto.s3.clone(),
        &moto.bucket,
        "archive/",
        ArchiveLayout::FirehoseDefault,
    );
    writer
        .put(&[small.clone(), big.clone()], now)
        .await
        .unwrap();
    let keys = moto.keys().await;
    let oversize: Vec<_> = keys.iter().filter(|k| k.contains("/oversize-")).collect();
    assert_eq!(oversize.len(), 1, "{keys:?}");
    assert!(oversize[0].ends_with(".json.gz"));
    assert_eq!(
        moto.reader().list(&since(now - HOUR_MS)).await.unwrap(),
        vec![big, small]
    );
}

fn gzip(lines: &[&Envelope]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for e in lines {
        gz.write_all(e.to_json().as_bytes()).unwrap();
        gz.write_all(b"\n").unwrap();
    }
    gz.finish().unwrap()
}

#[tokio::test]
async fn reads_gzip_json_lines_in_the_partitioned_layout_as_the_stacks_stream_delivers_them() {
    let moto = Moto::new().await;
    let h22 = 1_699_999_200_000; // 2023-11-14T22:00:00Z
    let e1 = envelope(
        "stripe",
        Provider::Stripe,
        "evt_1",
        b"{\"n\":1}",
        h22 + MINUTE_MS,
    );
    let e2 = envelope(
        "stripe",
        Provider::Stripe,
        "evt_2",
        b"{\"n\":2}",
        h22 + 3 * MINUTE_MS,
    );
    // Received at 22:58, delivered after the hour turned.
    let e3 = envelope(
        "github",
        Provider::Github,
        "d-3",
        b"{\"n\":3}",
        h22 + 58 * MINUTE_MS,
    );
    let e4 = envelope(
        "stripe",
        Provider::Stripe,
        "evt_4",
        b"{\"n\":4}",
        h22 + 70 * MINUTE_MS,
    );
    let e5 = envelope(
        "stripe",
        Provider::Stripe,
        "evt_5",
        b"{\"n\":5}",
        h22 + 4 * HOUR_MS,
    );
    let objects = [
        (
            "archive/date=2023-11-14/hour=22/doorbell-archive-1-2023-11-14-22-05-00-a.gz",
            gzip(&[&e1, &e2]),
        ),
        (
            // Two GZIP members, as concatenated output can be.
            "archive/date=2023-11-14/hour=23/doorbell-archive-1-2023-11-14-23-13-00-b.gz",
            [gzip(&[&e3]), gzip(&[&e4, &e1])].concat(),
        ),
        (
            "archive/date=2023-11-15/hour=02/doorbell-archive-1-2023-11-15-02-05-00-c.gz",
            gzip(&[&e5]),
        ),
        // Not the archive: never read.
        ("archive-errors/other/x.gz", b"not json".to_vec()),
    ];
    for (key, bytes) in objects {
        moto.s3
            .put_object()
            .bucket(&moto.bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .unwrap();
    }
    let calls = RequestCounter::default();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.config)
            .force_path_style(true)
            .interceptor(calls.clone())
            .build(),
    );
    let reader = S3ArchiveReader::new(s3, &moto.bucket, "archive/")
        .with_clock(Arc::new(ManualClock::new(h22 + 10 * HOUR_MS)));

    let q = ArchiveQuery {
        since_ms: Some(h22),
        until_ms: Some(h22 + HOUR_MS),
        ..Default::default()
    };
    assert_eq!(
        reader.list(&q).await.unwrap(),
        vec![e3.clone(), e2.clone(), e1.clone()]
    );
    assert_eq!(calls.get("S3.ListObjectsV2"), 2, "hours 22 and 23");

    let q = ArchiveQuery {
        key: Some(e5.idempotency_key.clone()),
        ..Default::default()
    };
    assert_eq!(reader.list(&q).await.unwrap(), vec![e5.clone()]);

    // With a limit, reading stops once the newest hours hold enough.
    let before = calls.get("S3.ListObjectsV2");
    let q = ArchiveQuery {
        limit: 1,
        ..Default::default()
    };
    assert_eq!(reader.list(&q).await.unwrap(), vec![e5]);
    let listed = calls.get("S3.ListObjectsV2") - before;
    assert!(listed <= 16, "listed {listed} hours");
}
