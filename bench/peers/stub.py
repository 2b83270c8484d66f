"""A loopback SQS stand-in that answers SendMessage and nothing else (Python stdlib only).

    python3 bench/peers/stub.py [--port 0]      # prints the port it listens on, then serves

It speaks the SQS JSON protocol that current SDKs use (boto3, AWS SDK for JavaScript v3):
`POST /` with `X-Amz-Target: AmazonSQS.SendMessage`, `Content-Type: application/x-amz-json-1.0`
and `{"QueueUrl": …, "MessageBody": …}`; it answers 200 with `{"MessageId": "<uuid>",
"MD5OfMessageBody": "<hex MD5 of the body as UTF-8>"}`, the digest the SDKs check. The older
query protocol (`Action=SendMessage&QueueUrl=…&MessageBody=…`, form-encoded) gets the XML
answer. Requests are not signature-checked and messages are not kept: it only counts them.
HTTP/1.1 with keep-alive, as SQS does, so a client reuses its connection.

On SIGINT or SIGTERM it prints the number of messages, errors and connections to stderr and
exits (a client that keeps its connection alive, as both SDKs do, opens one).
"""

import argparse
import hashlib
import json
import signal
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

JSON_TYPE = "application/x-amz-json-1.0"
COUNTS = {"sent": 0, "errors": 0, "connections": 0}
LOCK = threading.Lock()


def count(key):
    with LOCK:
        COUNTS[key] += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sqs-stub"
    sys_version = ""
    # Headers and body go out as two writes; with Nagle's algorithm on, the second waits for the
    # client's delayed ACK (about 40 ms on Linux) on a kept-alive connection.
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        count("connections")

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def json_error(self, status, code, message):
        count("errors")
        self.reply(status, json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}), JSON_TYPE)

    def query_error(self, status, code, message):
        count("errors")
        self.reply(
            status,
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>",
            "text/xml",
        )

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        target = self.headers.get("X-Amz-Target")
        if target is not None:
            self.json_protocol(target, raw)
        else:
            self.query_protocol(raw)

    def json_protocol(self, target, raw):
        if target != "AmazonSQS.SendMessage":
            return self.json_error(400, "UnsupportedOperation", f"this stub only answers SendMessage, not {target}")
        try:
            request = json.loads(raw)
        except ValueError:
            return self.json_error(400, "InvalidParameterValue", "the request body is not JSON")
        queue_url, body = request.get("QueueUrl"), request.get("MessageBody")
        if not isinstance(queue_url, str) or not queue_url:
            return self.json_error(400, "MissingParameter", "QueueUrl is required")
        if not isinstance(body, str) or not body:
            return self.json_error(400, "MissingParameter", "MessageBody is required")
        count("sent")
        md5 = hashlib.md5(body.encode("utf-8")).hexdigest()
        self.reply(200, json.dumps({"MessageId": str(uuid.uuid4()), "MD5OfMessageBody": md5}), JSON_TYPE)

    def query_protocol(self, raw):
        form = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        action = form.get("Action", [""])[0]
        if action != "SendMessage":
            return self.query_error(400, "InvalidAction", f"this stub only answers SendMessage, not {action!r}")
        if not form.get("QueueUrl", [""])[0]:
            return self.query_error(400, "MissingParameter", "QueueUrl is required")
        body = form.get("MessageBody", [""])[0]
        if not body:
            return self.query_error(400, "MissingParameter", "MessageBody is required")
        count("sent")
        md5 = hashlib.md5(body.encode("utf-8")).hexdigest()
        self.reply(
            200,
            '<SendMessageResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><SendMessageResult>'
            f"<MessageId>{uuid.uuid4()}</MessageId><MD5OfMessageBody>{md5}</MD5OfMessageBody>"
            f"</SendMessageResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            "</ResponseMetadata></SendMessageResponse>",
            "text/xml",
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (the default) picks a free port")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True

    def stop(signum, frame):
        print(
            f"sqs-stub: {COUNTS['sent']} messages, {COUNTS['errors']} errors, {COUNTS['connections']} connections",
            file=sys.stderr,
            flush=True,
        )
        # shutdown() waits for serve_forever, which runs in this thread: close from another.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
