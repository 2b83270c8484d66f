#!/usr/bin/env python3
"""Dollars per million webhooks, from the request counts the cost-model test asserts
(cli/tests/cost_model.rs) and billed durations given on the command line (scripts/bench passes 5 and 30 ms).

Prices: us-east-1 public price list (on-demand), arm64 Lambda:
  API Gateway HTTP API  $1.00 per million requests (first 300 M)   https://aws.amazon.com/api-gateway/pricing/
  Lambda function URL   no charge beyond the function's requests and duration  https://aws.amazon.com/lambda/pricing/
  Lambda requests       $0.20 per million                          https://aws.amazon.com/lambda/pricing/
  Lambda duration arm64 $0.0000133334 per GB-second, billed per 1 ms
  SQS standard          $0.40 per million requests (64 KB chunks)  https://aws.amazon.com/sqs/pricing/
  DynamoDB on-demand    $0.625 per million write request units     https://aws.amazon.com/dynamodb/pricing/on-demand/
  Firehose Direct PUT   $0.029 per GB (first 500 TB), each record rounded up to 5 KB  https://aws.amazon.com/firehose/pricing/
  S3 Standard           $0.023 per GB-month; $0.005 per 1,000 PUTs  https://aws.amazon.com/s3/pricing/

The archive's sizes are measured by shared/tests/archive_cost.rs (BENCHMARKS.md, section 10): a
3,050-byte envelope line, 346 bytes GZIP; the worker packs a batch into one Firehose record; the
stream flushes at most every 300 s (8,640 S3 PUTs in a 30-day month, priced here at a million
events a month); objects are kept 30 days.

Usage: cost.py INGEST_MS WORKER_BATCH_MS [BATCH_SIZE]   (billed durations, milliseconds)
"""
import json
import math
import sys

HTTP_API, LAMBDA_REQ, GB_S, SQS_REQ, WRU = 1.00, 0.20, 0.0000133334, 0.40, 0.625
FIREHOSE_GB, S3_PUT, S3_GB_MONTH = 0.029, 0.005 / 1000, 0.023
ARCHIVE_LINE_BYTES, ARCHIVE_GZIP_BYTES, FIREHOSE_INCREMENT, GB = 3050, 346, 5 * 1024, 2**30
ARCHIVE_OBJECTS_PER_MONTH, EVENTS_PER_MONTH, RETENTION_MONTHS = 8640, 1_000_000, 30 / 30.4375


def model(ingest_ms: float, worker_batch_ms: float, batch: int = 10, memory_mb: int = 128, dup_rate: float = 0.0,
          function_url: bool = False):
    per_m = 1_000_000
    lines = []
    def add(what, count_per_event, unit_price_per_m, note):
        lines.append((what, count_per_event, count_per_event * unit_price_per_m, note))
    if function_url:
        add("Lambda function URL request", 1, 0.0, "no per-request charge (IngestFunctionUrl=true)")
    else:
        add("API Gateway HTTP API request", 1, HTTP_API, "one per delivery")
    add("Lambda requests: ingest", 1, LAMBDA_REQ, "one per delivery")
    add("Lambda requests: worker", 1 / batch, LAMBDA_REQ, f"one per batch of {batch}")
    gb = memory_mb / 1024
    ingest_gbs = gb * math.ceil(ingest_ms) / 1000
    worker_gbs = gb * math.ceil(worker_batch_ms) / 1000 / batch
    add("Lambda duration: ingest (GB-s)", ingest_gbs, GB_S * per_m, f"{memory_mb} MB x {math.ceil(ingest_ms)} ms")
    add("Lambda duration: worker (GB-s)", worker_gbs, GB_S * per_m, f"{memory_mb} MB x {math.ceil(worker_batch_ms)} ms / {batch}")
    add("SQS SendMessage", 1, SQS_REQ, "ingest")
    add("SQS ReceiveMessage + DeleteMessageBatch", 2 / batch, SQS_REQ, f"event source mapping, per batch of {batch}")
    add("DynamoDB writes (WRU)", 2 * (1 - dup_rate) + dup_rate, WRU, "claim + completion, 1 WRU each (item <= 1 KB)")
    billed = math.ceil(batch * ARCHIVE_LINE_BYTES / FIREHOSE_INCREMENT) * FIREHOSE_INCREMENT / batch
    add("Archive: Firehose ingestion (GB)", billed / GB, FIREHOSE_GB * per_m,
        f"{billed:.0f} billed bytes per event: a batch of {batch} packed in one record, 5 KB rounding")
    add("Archive: S3 PUTs by Firehose", ARCHIVE_OBJECTS_PER_MONTH / EVENTS_PER_MONTH, S3_PUT * per_m,
        "one object per 300 s flush, at a million events a month")
    add("Archive: S3 storage (GB-month)", ARCHIVE_GZIP_BYTES / GB * RETENTION_MONTHS, S3_GB_MONTH * per_m,
        f"{ARCHIVE_GZIP_BYTES} GZIP bytes per event kept 30 days")
    total = sum(l[2] for l in lines)
    return lines, total


def main():
    ingest_ms = float(sys.argv[1]) if len(sys.argv) > 1 else 5
    worker_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 30
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    lines, total = model(ingest_ms, worker_ms, batch)
    _, url_total = model(ingest_ms, worker_ms, batch, function_url=True)
    print(f"| item | per webhook | $ per million webhooks | basis |")
    print(f"|---|---|---|---|")
    for what, count, dollars, note in lines:
        print(f"| {what} | {count:.6g} | {dollars:.4f} | {note} |")
    print(f"| **total, HTTP API** | | **{total:.2f}** | |")
    print(f"| **total, function URL** | | **{url_total:.2f}** | the HTTP API request replaced by a function URL |")
    print(json.dumps({"dollars_per_million": round(total, 4),
                      "dollars_per_million_function_url": round(url_total, 4)}))


if __name__ == "__main__":
    main()
