"""The Python peer: what a team would deploy as a Stripe webhook receiver Lambda in Python.

Per webhook it does what such a handler does: verify the `Stripe-Signature` header on the raw
body with Stripe's own library (`stripe.Webhook.construct_event`), then put the raw body on SQS
with boto3 (`send_message`). It measures the CPU time (user + system, the whole process) and
the wall time of that, per webhook, and prints one JSON line.

    python peer.py --endpoint http://127.0.0.1:PORT --queue-url URL --payload FILE --secret S \\
        [--iterations 2000] [--warmup 200]

Setup, not measured: read the payload, sign it as Stripe does (`t=<now>,v1=<hex HMAC-SHA256 of
"{t}.{body}">`, https://docs.stripe.com/webhooks#verify-manually), create the SQS client once
(as a Lambda does at init). Then, after `--warmup` webhooks, two runs of `--iterations` each:
verification alone, and verification followed by the send. Exits non-zero if a verification
fails, a send fails, or the SDK had to retry a send.

The body is handed to the library as a `str`, the way the Lambda runtime hands a handler the
API Gateway event's `body`; it is the payload's bytes decoded as UTF-8, unchanged.
"""

import argparse
import hashlib
import hmac
import json
import platform
import sys
import time
from importlib.metadata import version

import boto3
import stripe


def parse_args():
    parser = argparse.ArgumentParser(description="Stripe webhook receiver peer (stripe + boto3).")
    parser.add_argument("--endpoint", required=True, help="SQS endpoint, e.g. http://127.0.0.1:PORT")
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--payload", required=True, help="file holding the raw webhook body")
    parser.add_argument("--secret", required=True, help="the endpoint's signing secret (whsec_...)")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    if args.iterations < 1 or args.warmup < 0:
        parser.error("--iterations must be at least 1 and --warmup at least 0")
    return args


def sign(body: bytes, secret: str) -> str:
    """The `Stripe-Signature` header Stripe would send for `body` now."""
    t = int(time.time())
    mac = hmac.new(secret.encode("utf-8"), f"{t}.".encode("ascii") + body, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def main():
    args = parse_args()
    with open(args.payload, "rb") as f:
        raw = f.read()
    body = raw.decode("utf-8")
    sig_header = sign(raw, args.secret)
    secret = args.secret
    queue_url = args.queue_url
    sqs = boto3.client(
        "sqs",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        expected_id = json.loads(raw)["id"]
    except (ValueError, KeyError, TypeError):
        sys.exit(f"python peer: {args.payload} is not a JSON object with an id (a Stripe Event)")

    # Verification with Stripe's library, as its docs show for a webhook endpoint
    # (https://docs.stripe.com/webhooks#verify-official-libraries): construct_event checks the
    # signature and the timestamp (300 s tolerance) on the raw body, then parses the Event.
    # It raises stripe.SignatureVerificationError (or ValueError for a body that is not JSON).
    def verify():
        return stripe.Webhook.construct_event(body, sig_header, secret)

    def send():
        response = sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        if response["ResponseMetadata"].get("RetryAttempts", 0):
            raise RuntimeError(f"the SDK retried a send ({response['ResponseMetadata']['RetryAttempts']} retries)")
        return response

    try:
        event = verify()
        if event.id != expected_id:
            raise RuntimeError(f"construct_event returned event {event.id!r}, expected {expected_id!r}")
        for _ in range(args.warmup):
            verify()
            send()

        n = args.iterations
        cpu0, wall0 = time.process_time_ns(), time.perf_counter_ns()
        for _ in range(n):
            verify()
        cpu1, wall1 = time.process_time_ns(), time.perf_counter_ns()
        for _ in range(n):
            verify()
            send()
        cpu2, wall2 = time.process_time_ns(), time.perf_counter_ns()
    except Exception as e:  # a failed verification or send ends the run
        print(f"python peer: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

    def per_webhook_us(ns):
        return round(ns / n / 1000, 2)

    print(json.dumps({
        "peer": "python",
        "runtime": platform.python_version(),
        "stripe": version("stripe"),
        "sdk": version("boto3"),
        "payload_bytes": len(raw),
        "iterations": n,
        "verify_cpu_us": per_webhook_us(cpu1 - cpu0),
        "verify_wall_us": per_webhook_us(wall1 - wall0),
        "verify_and_send_cpu_us": per_webhook_us(cpu2 - cpu1),
        "verify_and_send_wall_us": per_webhook_us(wall2 - wall1),
    }))


if __name__ == "__main__":
    main()
