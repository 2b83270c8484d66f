"""Conformance vectors from the providers' Python SDKs, appended to the Node ones.

- Slack: `slack_sdk.signature.SignatureVerifier.generate_signature` signs real Events API,
  url_verification and slash-command bodies; `is_valid` (with its clock pinned) checks each.
- Twilio: `twilio.request_validator.RequestValidator.compute_signature` signs SMS and voice
  status callbacks (form posts, with and without a query string) and a JSON body
  (`bodySHA256`); `validate` checks each.

Reads the Node vectors (JSON array) on stdin, writes the combined array to stdout.
"""

import base64
import json
import sys
from urllib.parse import urlencode

from slack_sdk.signature import Clock, SignatureVerifier
from twilio.request_validator import RequestValidator

NOW = 1700000000
SLACK_SECRET = "conformance_slack_signing_secret"


class PinnedClock(Clock):
    def now(self) -> float:
        return float(NOW)


def main():
    vectors = json.load(sys.stdin)
    verifier = SignatureVerifier(SLACK_SECRET, clock=PinnedClock())
    bodies = [
        ("event_callback message", "application/json", json.dumps({
            "token": "XXYYZZ", "team_id": "T123ABC456", "api_app_id": "A123ABC456", "type": "event_callback",
            "event": {"type": "message", "channel": "C123ABC456", "user": "U123ABC456", "text": "Café ☕ — 東京", "ts": "1355517523.000005"},
            "event_id": "Ev123ABC456", "event_time": 1355517523, "authorizations": [{"team_id": "T123ABC456", "user_id": "U123ABC456", "is_bot": False}],
        }, ensure_ascii=False)),
        ("event_callback app_mention, pretty", "application/json", json.dumps({
            "type": "event_callback", "team_id": "T1", "event_id": "Ev0PV52K21", "event_time": 1700000000,
            "event": {"type": "app_mention", "user": "U061F7AUR", "text": "<@U0LAN0Z89> is it everything a river should be?", "ts": "1515449522.000016", "channel": "C123ABC456"},
        }, indent=2) + "\n"),
        ("url_verification", "application/json", json.dumps({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"})),
        ("slash command", "application/x-www-form-urlencoded", urlencode({
            "token": "gIkuvaNzQIHg97ATvDxqgjtO", "team_id": "T0001", "team_domain": "example", "channel_id": "C2147483705",
            "user_id": "U2147483697", "command": "/weather", "text": "94070", "response_url": "https://hooks.slack.com/commands/1234/5678",
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        })),
        ("interactive block_actions", "application/x-www-form-urlencoded", urlencode({
            "payload": json.dumps({"type": "block_actions", "trigger_id": "12466734323.1395872398", "user": {"id": "U1"}, "actions": [{"action_id": "approve", "value": "yes"}]}),
        })),
    ]
    for name, content_type, body in bodies:
        signature = verifier.generate_signature(timestamp=str(NOW), body=body)
        if not verifier.is_valid(body=body, timestamp=str(NOW), signature=signature):
            raise SystemExit(f"slack_sdk rejected its own vector {name}")
        vectors.append({
            "provider": "slack", "name": name, "secret": SLACK_SECRET, "timestamp": NOW,
            "headers": {"content-type": content_type, "x-slack-request-timestamp": str(NOW), "x-slack-signature": signature},
            "body_base64": base64.b64encode(body.encode("utf-8")).decode(),
        })
    twilio_token = "conformance_twilio_auth_token"
    validator = RequestValidator(twilio_token)
    base = "https://hooks.example.com/webhooks/src"
    forms = [
        ("incoming SMS", "", {"ToCountry": "US", "SmsMessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f", "NumMedia": "0", "SmsSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
                               "SmsStatus": "received", "Body": "Hola, ¿qué tal? ☕", "To": "+15005550006", "MessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
                               "AccountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "From": "+14155552671", "ApiVersion": "2010-04-01"}),
        ("message status callback with query", "tenant=acme&x=1", {"MessageSid": "SM2", "MessageStatus": "delivered", "AccountSid": "AC1", "To": "+15005550006"}),
        ("voice call status", "", {"CallSid": "CA1234567890ABCDE", "CallStatus": "completed", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030", "To": "+18005551212"}),
    ]
    for name, query, params in forms:
        url = f"{base}?{query}" if query else base
        body = urlencode(params)
        signature = validator.compute_signature(url, params)
        if not validator.validate(url, params, signature):
            raise SystemExit(f"twilio rejected its own vector {name}")
        vectors.append({"provider": "twilio", "name": name, "secret": twilio_token, "url": base, "query": query, "timestamp": NOW,
                        "headers": {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
                        "body_base64": base64.b64encode(body.encode()).decode()})
    json_body = json.dumps({"MessageSid": "SM3", "MessageStatus": "sent"})
    import hashlib
    query = "bodySHA256=" + hashlib.sha256(json_body.encode()).hexdigest()
    url = f"{base}?{query}"
    signature = validator.compute_signature(url, {})
    if not validator.validate(url, json_body, signature):
        raise SystemExit("twilio rejected its own JSON vector")
    vectors.append({"provider": "twilio", "name": "JSON body bound by bodySHA256", "secret": twilio_token, "url": base, "query": query, "timestamp": NOW,
                    "headers": {"content-type": "application/json", "x-twilio-signature": signature, "i-twilio-idempotency-token": "tok-conf-1"},
                    "body_base64": base64.b64encode(json_body.encode()).decode()})
    json.dump(vectors, sys.stdout)


if __name__ == "__main__":
    main()
