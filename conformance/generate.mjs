// Conformance vectors: real payloads signed by the providers' own SDKs.
//
// - Stripe: the `stripe` package's `webhooks.generateTestHeaderString` (the helper Stripe
//   documents for testing webhook endpoints) signs Stripe Event objects; `constructEvent`
//   checks each vector before it is written, so a vector is what Stripe's SDK accepts.
// - Standard Webhooks and Svix: `standardwebhooks` and `svix` `Webhook.sign`, checked with
//   their own `verify`.
// - Paddle: signed per Paddle's documented scheme and accepted by `@paddle/paddle-node-sdk`'s
//   WebhooksValidator (which only verifies, against the real clock: checked at the current
//   time, then the vector is signed the same way at the fixed time).
// - Square: signed per Square's scheme and accepted by the `square` SDK's
//   WebhooksHelper.verifySignature.
// - Shopify: signed per Shopify's scheme and accepted by `@shopify/shopify-api`'s
//   webhooks.validate.
// - GitHub: every example payload in `@octokit/webhooks-examples` (GitHub's documented
//   payloads for api.github.com) signed with `@octokit/webhooks-methods` `sign()`, checked
//   with its `verify()`.
//
// Prints a JSON array of vectors: { provider, name, secret, timestamp, headers, body_base64 }.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { sign as githubSign, verify as githubVerify } from "@octokit/webhooks-methods";
import { createHmac } from "node:crypto";
import { Paddle, WebhooksValidator as PaddleValidator } from "@paddle/paddle-node-sdk";
import "@shopify/shopify-api/adapters/node";
import { ApiVersion, shopifyApi } from "@shopify/shopify-api";
import { WebhooksHelper as SquareWebhooks } from "square";
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

// Paddle Billing. Constructing the client registers the Node crypto provider the validator uses.
new Paddle("pdl_sdbx_apikey_conformance_only");
const PADDLE_SECRET = "pdl_ntfset_01conformance_secret_key";
const paddleSign = (ts, body) => `ts=${ts};h1=${createHmac("sha256", PADDLE_SECRET).update(`${ts}:${body}`).digest("hex")}`;
const paddleBodies = [
  ["transaction.completed", { event_id: "evt_01hv8x2acma2gz9cpr9a9bkz4n", event_type: "transaction.completed", occurred_at: "2024-04-12T10:18:49.621022Z", notification_id: "ntf_01hv8x2af3kcnqc7cz6ch5knsa", data: { id: "txn_01hv8wptq8987qeep44cyrewp9", status: "completed", currency_code: "EUR", details: { totals: { total: "2400" } } } }],
  ["subscription.created, pretty", { event_id: "evt_01hv8y1", event_type: "subscription.created", occurred_at: "2024-04-12T11:00:00Z", data: { id: "sub_01", status: "active", custom_data: { note: "Zoë ☕" } } }],
];
for (const [i, [name, obj]] of paddleBodies.entries()) {
  const body = i === 1 ? JSON.stringify(obj, null, 2) : JSON.stringify(obj);
  const nowTs = Math.floor(Date.now() / 1000);
  if (!(await new PaddleValidator().isValidSignature(body, PADDLE_SECRET, paddleSign(nowTs, body)))) throw new Error("Paddle SDK rejected the scheme");
  vectors.push({ provider: "paddle", name, secret: PADDLE_SECRET, timestamp: NOW, headers: { "content-type": "application/json", "paddle-signature": paddleSign(NOW, body) }, body_base64: Buffer.from(body).toString("base64") });
}

// Square.
const SQUARE_KEY = "conformance-square-signature-key";
const SQUARE_URL = "https://hooks.example.com/webhooks/src";
const squareBodies = [
  ["payment.updated", { merchant_id: "6SSW7HV8K2ST5", type: "payment.updated", event_id: "13b867cf-db3d-4b1c-90b6-2f32a9d78124", created_at: "2024-05-01T12:00:00Z", data: { type: "payment", id: "KkAkhdMsgzn59SM8A89WgKwekxLZY", object: { payment: { id: "KkAk", amount_money: { amount: 100, currency: "USD" }, status: "COMPLETED" } } } }],
  ["customer.created with non-ASCII", { merchant_id: "6SSW7HV8K2ST5", type: "customer.created", event_id: "f1ad2d6f-0000-4a5b-8c44-06a0c87f2c1e", created_at: "2024-05-02T08:30:00Z", data: { type: "customer", id: "C1", object: { customer: { given_name: "José", family_name: "Müller" } } } }],
];
for (const [name, obj] of squareBodies) {
  const body = JSON.stringify(obj);
  const signature = createHmac("sha256", SQUARE_KEY).update(SQUARE_URL + body).digest("base64");
  if (!(await SquareWebhooks.verifySignature({ requestBody: body, signatureHeader: signature, signatureKey: SQUARE_KEY, notificationUrl: SQUARE_URL }))) throw new Error("Square SDK rejected the scheme");
  vectors.push({ provider: "square", name, secret: SQUARE_KEY, url: SQUARE_URL, timestamp: NOW, headers: { "content-type": "application/json", "x-square-hmacsha256-signature": signature }, body_base64: Buffer.from(body).toString("base64") });
}

// Shopify.
const SHOPIFY_SECRET = "shpss_conformance_client_secret";
const shopify = shopifyApi({ apiKey: "conformance", apiSecretKey: SHOPIFY_SECRET, scopes: ["read_orders"], hostName: "example.com", apiVersion: ApiVersion.October24, isEmbeddedApp: false, logger: { level: 0 } });
const shopifyBodies = [
  ["orders/create", "orders/create", { id: 820982911946154500, email: "jon@example.com", created_at: "2024-05-01T12:00:00-04:00", total_price: "403.00", currency: "USD", line_items: [{ id: 866550311766439000, title: "IPod Nano - 8GB", quantity: 1, price: "199.00" }], note: "Entregar después de las 5 ☕" }],
  ["customers/update, pretty", "customers/update", { id: 706405506930370000, email: "bob@biller.com", first_name: "Bob", last_name: "Biller", tags: "loyal", updated_at: "2024-05-01T12:00:00-04:00" }],
];
for (const [i, [name, topic, obj]] of shopifyBodies.entries()) {
  const body = i === 1 ? JSON.stringify(obj, null, 2) : JSON.stringify(obj);
  const hmac = createHmac("sha256", SHOPIFY_SECRET).update(body).digest("base64");
  const headers = { "content-type": "application/json", "x-shopify-hmac-sha256": hmac, "x-shopify-topic": topic, "x-shopify-api-version": "2024-10",
    "x-shopify-shop-domain": "conformance.myshopify.com", "x-shopify-webhook-id": `b54557e4-bdd9-4b37-8a5f-bf7d70bcd04${i}`,
    "x-shopify-event-id": `98880550-7158-44d4-b7cd-2c97c8a091b${i}`, "x-shopify-triggered-at": "2024-05-01T16:00:27.877041743Z" };
  const r = await shopify.webhooks.validate({ rawBody: body, rawRequest: { headers, method: "POST", url: "/webhooks/src" }, rawResponse: {} });
  if (!r.valid) throw new Error(`Shopify SDK rejected ${name}`);
  vectors.push({ provider: "shopify", name, secret: SHOPIFY_SECRET, timestamp: NOW, headers, body_base64: Buffer.from(body).toString("base64") });
}

process.stdout.write(JSON.stringify(vectors));
