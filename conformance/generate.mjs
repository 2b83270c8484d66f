// Conformance vectors: real payloads signed by the providers' own SDKs.
//
// - Stripe: the `stripe` package's `webhooks.generateTestHeaderString` (the helper Stripe
//   documents for testing webhook endpoints) signs Stripe Event objects; `constructEvent`
//   checks each vector before it is written, so a vector is what Stripe's SDK accepts.
// - Standard Webhooks and Svix: `standardwebhooks` and `svix` `Webhook.sign`, checked with
//   their own `verify`.
// - GitHub: every example payload in `@octokit/webhooks-examples` (GitHub's documented
//   payloads for api.github.com) signed with `@octokit/webhooks-methods` `sign()`, checked
//   with its `verify()`.
//
// Prints a JSON array of vectors: { provider, name, secret, timestamp, headers, body_base64 }.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { sign as githubSign, verify as githubVerify } from "@octokit/webhooks-methods";
import { Webhook as StandardWebhook } from "standardwebhooks";
import Stripe from "stripe";
import { Webhook as SvixWebhook } from "svix";

const require = createRequire(import.meta.url);
const githubExamples = require("@octokit/webhooks-examples");
const stripe = new Stripe("sk_test_conformance_only");

const vectors = [];
const STRIPE_SECRET = "whsec_conformance_0001";
const STRIPE_ROTATED = "whsec_conformance_0002";
const GITHUB_SECRET = "conformance-github-secret";
const NOW = 1700000000;

const sample = JSON.parse(
  readFileSync(new URL("../cli/samples/stripe-payment_intent.succeeded.json", import.meta.url), "utf8"),
);
const stripeEvents = [
  ["payment_intent.succeeded, pretty-printed", JSON.stringify(sample, null, 2) + "\n"],
  ["payment_intent.succeeded, compact", JSON.stringify(sample)],
  [
    "customer.subscription.created with non-ASCII text",
    JSON.stringify({
      id: "evt_1Conformance0002", object: "event", api_version: "2024-06-20", created: NOW - 5,
      type: "customer.subscription.created", livemode: false, pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      data: { object: { id: "sub_1Conf", object: "subscription", status: "incomplete", description: "Café ☕ plan — 東京", items: { object: "list", data: [] } } },
    }, null, 4),
  ],
  [
    "invoice.paid, about 160 KB",
    JSON.stringify({
      id: "evt_1Conformance0003", object: "event", api_version: "2024-06-20", created: NOW, type: "invoice.paid",
      livemode: false, pending_webhooks: 2, request: { id: "req_x", idempotency_key: "k" },
      data: { object: { id: "in_1Conf", object: "invoice", lines: { object: "list", data: Array.from({ length: 350 }, (_, i) => ({ id: `il_${i}`, object: "line_item", amount: i * 100, description: `Line ${i} `.padEnd(200, "·") })) } } },
    }),
  ],
  [
    "checkout.session.completed with escaped characters",
    JSON.stringify({ id: "evt_1Conformance0004", object: "event", created: NOW, type: "checkout.session.completed", data: { object: { id: "cs_test_1", object: "checkout.session", metadata: { note: "quote \" backslash \\ newline \n tab \t slash \/ emoji 😀" } } } }),
  ],
];
for (const [name, payload] of stripeEvents) {
  const header = stripe.webhooks.generateTestHeaderString({ payload, secret: STRIPE_SECRET, timestamp: NOW });
  stripe.webhooks.constructEvent(payload, header, STRIPE_SECRET, 300, undefined, NOW);
  vectors.push({ provider: "stripe", name, secret: STRIPE_SECRET, timestamp: NOW, headers: { "content-type": "application/json; charset=utf-8", "stripe-signature": header }, body_base64: Buffer.from(payload, "utf8").toString("base64") });
}
// During a secret roll Stripe signs with both secrets: one header, two v1 values.
{
  const payload = JSON.stringify(sample, null, 2) + "\n";
  const oldHeader = stripe.webhooks.generateTestHeaderString({ payload, secret: STRIPE_ROTATED, timestamp: NOW });
  const newHeader = stripe.webhooks.generateTestHeaderString({ payload, secret: STRIPE_SECRET, timestamp: NOW });
  const header = `${oldHeader},${newHeader.split(",")[1]}`;
  stripe.webhooks.constructEvent(payload, header, STRIPE_SECRET, 300, undefined, NOW);
  vectors.push({ provider: "stripe", name: "two v1 signatures during a secret roll", secret: STRIPE_SECRET, timestamp: NOW, headers: { "content-type": "application/json", "stripe-signature": header }, body_base64: Buffer.from(payload).toString("base64") });
}

let n = 0;
for (const event of githubExamples) {
  for (const example of event.examples) {
    n += 1;
    const payload = JSON.stringify(example, null, 2) + "\n";
    const signature = await githubSign(GITHUB_SECRET, payload);
    if (!(await githubVerify(GITHUB_SECRET, payload, signature))) throw new Error("octokit rejected its own signature");
    const delivery = `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
    vectors.push({
      provider: "github", name: `${event.name}${example.action ? "." + example.action : ""} #${n}`, secret: GITHUB_SECRET, timestamp: NOW,
      headers: { "content-type": "application/json", "x-github-event": event.name, "x-github-delivery": delivery, "x-github-hook-id": "424242", "x-hub-signature-256": signature },
      body_base64: Buffer.from(payload, "utf8").toString("base64"),
    });
  }
}
// Standard Webhooks and Svix: the same scheme under two header families.
const STANDARD_SECRET = "whsec_" + Buffer.from("conformance-standard-webhooks-key").toString("base64");
const standardPayloads = [
  ["invoice.paid", JSON.stringify({ type: "invoice.paid", timestamp: "2023-11-14T22:13:20Z", data: { id: "inv_1", amount: 1200 } })],
  ["user.created with non-ASCII", JSON.stringify({ type: "user.created", data: { name: "Zoë 東京 😀", email: "z@example.invalid" } }, null, 2) + "\n"],
  ["no type field", JSON.stringify({ data: { anything: [1, 2, 3] } })],
  ["large message", JSON.stringify({ type: "report.ready", data: { rows: Array.from({ length: 800 }, (_, i) => ({ i, note: "·".repeat(40) })) } })],
];
const families = [
  ["webhook", new StandardWebhook(STANDARD_SECRET)],
  ["svix", new SvixWebhook(STANDARD_SECRET)],
];
for (const [family, wh] of families) {
  for (const [i, [name, payload]] of standardPayloads.entries()) {
    const id = `msg_conf_${family}_${i}`;
    const signature = wh.sign(id, new Date(NOW * 1000), payload);
    const headers = { [`${family}-id`]: id, [`${family}-timestamp`]: String(NOW), [`${family}-signature`]: signature, "content-type": "application/json" };
    vectors.push({ provider: "standard", name: `${family}: ${name}`, secret: STANDARD_SECRET, timestamp: NOW, headers, body_base64: Buffer.from(payload, "utf8").toString("base64") });
  }
}

process.stdout.write(JSON.stringify(vectors));
