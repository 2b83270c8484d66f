// The Node peer: what a team would deploy as a Stripe webhook receiver Lambda in Node.js.
//
// Per webhook it does what such a handler does: verify the `Stripe-Signature` header on the raw
// body with Stripe's own library (`stripe.webhooks.constructEvent`), then put the raw body on SQS
// with the AWS SDK for JavaScript v3 (`SQSClient` + `SendMessageCommand`). It measures the CPU
// time (user + system, the whole process) and the wall time of that, per webhook, and prints one
// JSON line.
//
//   node peer.mjs --endpoint http://127.0.0.1:PORT --queue-url URL --payload FILE --secret S \
//       [--iterations 2000] [--warmup 200]
//
// Setup, not measured: read the payload, sign it as Stripe does (`t=<now>,v1=<hex HMAC-SHA256 of
// "{t}.{body}">`, https://docs.stripe.com/webhooks#verify-manually), create the Stripe and SQS
// clients once (as a Lambda does at init). Then, after `--warmup` webhooks, two runs of
// `--iterations` each: verification alone, and verification followed by the send. Exits
// non-zero if a verification fails, a send fails, or the SDK had to retry a send.
//
// The body is handed to the library as a string, the way the Lambda runtime hands a handler the
// API Gateway event's `body`; it is the payload's bytes decoded as UTF-8, unchanged.

import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { SQSClient, SendMessageCommand } from "@aws-sdk/client-sqs";
import Stripe from "stripe";

function usage(message) {
  console.error(`node peer: ${message}`);
  console.error(
    "usage: node peer.mjs --endpoint URL --queue-url URL --payload FILE --secret S [--iterations N] [--warmup M]",
  );
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      endpoint: { type: "string" },
      "queue-url": { type: "string" },
      payload: { type: "string" },
      secret: { type: "string" },
      iterations: { type: "string", default: "2000" },
      warmup: { type: "string", default: "200" },
    },
  }));
} catch (e) {
  usage(e.message);
}
for (const name of ["endpoint", "queue-url", "payload", "secret"]) {
  if (!values[name]) usage(`--${name} is required`);
}
const iterations = Number(values.iterations);
const warmup = Number(values.warmup);
if (!Number.isInteger(iterations) || iterations < 1) usage("--iterations must be an integer of at least 1");
if (!Number.isInteger(warmup) || warmup < 0) usage("--warmup must be an integer of at least 0");

const raw = readFileSync(values.payload);
const body = raw.toString("utf8");
const secret = values.secret;
const queueUrl = values["queue-url"];
const t = Math.floor(Date.now() / 1000);
const v1 = createHmac("sha256", secret).update(`${t}.`).update(raw).digest("hex");
const sigHeader = `t=${t},v1=${v1}`;
let expectedId;
try {
  expectedId = JSON.parse(body).id;
} catch {}
if (typeof expectedId !== "string") usage(`${values.payload} is not a JSON object with an id (a Stripe Event)`);

// A receiver builds its Stripe client with its API key; verifying a webhook makes no API call.
const stripe = new Stripe("sk_test_peer_benchmark_no_api_calls");
const sqs = new SQSClient({
  endpoint: values.endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
});

// Verification with Stripe's library, as its docs show for a webhook endpoint
// (https://docs.stripe.com/webhooks#verify-official-libraries): constructEvent checks the
// signature and the timestamp (300 s tolerance) on the raw body, then parses the Event. It
// throws Stripe.errors.StripeSignatureVerificationError when the signature does not match.
const verify = () => stripe.webhooks.constructEvent(body, sigHeader, secret);

// SendMessage over the SQS JSON protocol; the SDK checks the answer's MD5OfMessageBody.
async function send() {
  const out = await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));
  if (out.$metadata.attempts !== 1) {
    throw new Error(`the SDK retried a send (${out.$metadata.attempts} attempts)`);
  }
  return out;
}

const cpuUs = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};
const wallNs = () => process.hrtime.bigint();
const installedVersion = (name) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8")).version;

let result;
try {
  const event = verify();
  if (event.id !== expectedId) throw new Error(`constructEvent returned event ${event.id}, expected ${expectedId}`);
  let last = event;
  for (let i = 0; i < warmup; i++) {
    last = verify();
    await send();
  }

  const cpu0 = cpuUs();
  const wall0 = wallNs();
  for (let i = 0; i < iterations; i++) last = verify();
  const cpu1 = cpuUs();
  const wall1 = wallNs();
  for (let i = 0; i < iterations; i++) {
    last = verify();
    await send();
  }
  const cpu2 = cpuUs();
  const wall2 = wallNs();
  if (last.id !== expectedId) throw new Error("the last event differs from the first");

  const perWebhook = (us) => Math.round((us / iterations) * 100) / 100;
  result = {
    peer: "node",
    runtime: process.versions.node,
    stripe: installedVersion("stripe"),
    sdk: installedVersion("@aws-sdk/client-sqs"),
    payload_bytes: raw.length,
    iterations,
    verify_cpu_us: perWebhook(cpu1 - cpu0),
    verify_wall_us: perWebhook(Number(wall1 - wall0) / 1000),
    verify_and_send_cpu_us: perWebhook(cpu2 - cpu1),
    verify_and_send_wall_us: perWebhook(Number(wall2 - wall1) / 1000),
  };
} catch (e) {
  console.error(`node peer: ${e.type ?? e.name}: ${e.message}`);
  process.exit(1);
}
sqs.destroy();
console.log(JSON.stringify(result));
