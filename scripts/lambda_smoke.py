#!/usr/bin/env python3
"""Runs every file in events/ through the real function binaries behind cargo lambda's local
Lambda Runtime API (`cargo lambda watch` + `cargo lambda invoke`), the Docker-free equivalent
of `sam local invoke`, and checks each response against events/expected.json.

The functions get the environment the SAM template gives them, pointed at a moto server
(DOORBELL_TEST_AWS_ENDPOINT): a queue for ingest, a table for the worker. Ingest events that
must verify are re-signed with `doorbell sign` first (Stripe signatures go stale).
Usage: lambda_smoke.py <doorbell binary>   (run from the repository root by scripts/test)
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOORBELL = sys.argv[1]
ENDPOINT = os.environ["DOORBELL_TEST_AWS_ENDPOINT"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws(service):
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def main():
    suffix = uuid.uuid4().hex[:8]
    queue_url = aws("sqs").create_queue(QueueName=f"smoke-events-{suffix}")["QueueUrl"]
    table = f"smoke-webhook-events-{suffix}"
    aws("dynamodb").create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                 AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                 KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    sources = subprocess.run([DOORBELL, "events", "dev-sources"], check=True, capture_output=True, text=True).stdout.strip()
    env_file = tempfile.NamedTemporaryFile("w", suffix=".env", delete=False)
    for k, v in {
        "DOORBELL_QUEUE_URL": queue_url, "DOORBELL_SOURCES": sources, "DOORBELL_TABLE": table,
        "AWS_ENDPOINT_URL": ENDPOINT, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1", "RUST_LOG": "warn",
    }.items():
        env_file.write(f"{k}='{v}'\n")  # single-quoted: values hold JSON
    env_file.close()

    port = free_port()
    watch = subprocess.Popen(["cargo", "lambda", "watch", "--ignore-changes",
                              "--invoke-address", "127.0.0.1", "--invoke-port", str(port), "--env-file", env_file.name],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tempfile.gettempdir(), f"lambda-watch-{suffix}.log"), "w"))
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if watch.poll() is not None:
                    raise SystemExit("cargo lambda watch exited")
                time.sleep(0.5)
        expected = json.load(open(os.path.join(ROOT, "events", "expected.json")))
        passed = failed = 0
        for name, want in sorted(expected.items()):
            path = os.path.join(ROOT, "events", name)
            fn = "doorbell-" + want["function"]
            if want["function"] == "ingest" and want["statusCode"] == 200:
                signed = subprocess.run([DOORBELL, "sign", path], check=True, capture_output=True, text=True).stdout
                data = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
                data.write(signed)
                data.close()
                path = data.name
            out = subprocess.run(["cargo", "lambda", "invoke", fn, "--data-file", path, "--invoke-address", "127.0.0.1",
                                  "--invoke-port", str(port), "--output-format", "json"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=900)
            try:
                resp = json.loads(out.stdout)
            except json.JSONDecodeError:
                resp = {"error": out.stdout + out.stderr}
            if want["function"] == "ingest":
                ok = resp.get("statusCode") == want["statusCode"]
                got = resp.get("statusCode", resp)
            else:
                got = [f["itemIdentifier"] for f in resp.get("batchItemFailures", [])] if "batchItemFailures" in resp else resp
                ok = got == want["batchItemFailures"]
            print(f"{'ok  ' if ok else 'FAIL'} {fn:<16} {name:<40} {got}")
            passed += ok
            failed += not ok
        depth = int(aws("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        want_depth = sum(1 for w in expected.values() if w["function"] == "ingest" and w["statusCode"] == 200)
        ok = depth == want_depth
        print(f"{'ok  ' if ok else 'FAIL'} ingest enqueued {depth} messages on the queue (expected {want_depth})")
        passed += ok
        failed += not ok
        print(f"smoke: {passed} passed, {failed} failed")
        return 1 if failed else 0
    finally:
        watch.terminate()
        try:
            watch.wait(timeout=10)
        except subprocess.TimeoutExpired:
            watch.kill()


if __name__ == "__main__":
    sys.exit(main())
