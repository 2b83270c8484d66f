"""Writes the benchmark payloads: Stripe `payment_intent.succeeded` Events of fixed sizes.

    python3 bench/payloads/make_payloads.py      # rewrites stripe-{1k,2k,20k,256k}.json here

Every file is one Event (`object: "event"`, `data.object` a PaymentIntent, API version
2024-06-20), pretty-printed with two spaces as Stripe sends it, UTF-8, no trailing newline,
and exactly the named size in bytes (1024, 2048, 20480, 262144). The output is deterministic.

- 1k: the Event envelope and the PaymentIntent's core fields (amount, status, customer, …).
- 2k: the PaymentIntent's fields of that API version but for `shipping` and
  `payment_method_options` (a real one with all of them is about 2.6 KB).
- 20k: every field, plus the order's cart in metadata: `cart_001`, `cart_002`, … each holding as
  many `sku=…;qty=…;unit_amount=…;name=…` lines as fit in 500 characters, as shops commonly
  store a cart on the PaymentIntent. It stays within Stripe's metadata limits (50 keys, values
  of up to 500 characters).
- 256k: the same shape with over 500 cart keys. No real PaymentIntent is this large (those
  limits forbid it); it stands in for the largest body that fits one queue message as is:
  262144 bytes (256 KiB) is the message size limit ingest is configured with
  (`DOORBELL_QUEUE_MAX_MESSAGE_BYTES`).

Cart keys are added while a whole one fits; the description is then stretched to reach the
exact size.
"""

import json
import random
import string
from pathlib import Path

HERE = Path(__file__).resolve().parent
CREATED = 1718900000
ALNUM = string.ascii_letters + string.digits
CORE, MOST, FULL = 0, 1, 2  # how many of the PaymentIntent's fields an Event carries


def stripe_id(rng, prefix, n=24):
    return prefix + "".join(rng.choice(ALNUM) for _ in range(n))


def products(rng):
    names = [
        ("TEE-ORG-BLK", "Organic cotton tee, black", 2500),
        ("TEE-ORG-WHT", "Organic cotton tee, white", 2500),
        ("HOOD-MRN", "Merino hoodie, navy", 8900),
        ("SOCK-3PK", "Wool socks, 3-pack", 1800),
        ("CAP-CRD", "Corduroy cap, rust", 3200),
        ("BAG-CNV", "Canvas tote, natural", 2200),
        ("JKT-RAIN", "Packable rain jacket, olive", 12900),
        ("BEAN-CAF", "Café beanie, oat (Zoë's pick)", 2900),
    ]
    sizes = ["XS", "S", "M", "L", "XL"]
    while True:
        sku, name, price = rng.choice(names)
        size = rng.choice(sizes)
        qty = rng.randint(1, 3)
        yield f"sku={sku}-{size};qty={qty};unit_amount={price};name={name}, {size}"


def cart_chunk(rng):
    """One metadata value: as many cart lines as fit in Stripe's 500 characters, `|`-joined."""
    lines = products(rng)
    chunk = next(lines)
    while True:
        line = next(lines)
        if len(chunk) + 1 + len(line) > 500:
            return chunk
        chunk += "|" + line


def event(rng, full):
    pi_id = stripe_id(rng, "pi_3P", 22)
    charge_id = "ch_3P" + pi_id[5:]
    customer = stripe_id(rng, "cus_", 14)
    order = f"ord_{rng.randint(100000, 999999)}"
    metadata = {"order_id": order}
    if full:
        metadata.update({"customer_name": "Zoë Müller", "channel": "web"})
    pi = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": 11600,
    }
    if full:
        pi.update({"amount_capturable": 0, "amount_details": {"tip": {}}})
    pi["amount_received"] = 11600
    if full:
        pi.update({
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
            "canceled_at": None,
            "cancellation_reason": None,
        })
    pi.update({
        "capture_method": "automatic_async",
        "client_secret": f"{pi_id}_secret_{stripe_id(rng, '', 25)}",
    })
    if full:
        pi["confirmation_method"] = "automatic"
    pi.update({
        "created": CREATED - 4,
        "currency": "eur",
        "customer": customer,
        "description": f"Order {order}",
    })
    if full:
        pi.update({"invoice": None, "last_payment_error": None})
    pi.update({"latest_charge": charge_id, "livemode": False, "metadata": metadata})
    if full:
        pi.update({"next_action": None, "on_behalf_of": None})
    pi["payment_method"] = stripe_id(rng, "pm_1P", 22)
    if full:
        pi.update({
            "payment_method_configuration_details": {"id": stripe_id(rng, "pmc_1O", 22), "parent": None},
        })
    if full == FULL:
        pi.update({
            "payment_method_options": {
                "card": {
                    "installments": None,
                    "mandate_options": None,
                    "network": None,
                    "request_three_d_secure": "automatic",
                },
                "link": {"persistent_token": None},
            },
        })
    pi["payment_method_types"] = ["card", "link"] if full else ["card"]
    if full:
        pi.update({
            "processing": None,
            "receipt_email": "zoe.mueller@example.com",
            "review": None,
            "setup_future_usage": None,
        })
    if full == FULL:
        pi.update({
            "shipping": {
                "address": {
                    "city": "Berlin",
                    "country": "DE",
                    "line1": "Torstraße 109",
                    "line2": None,
                    "postal_code": "10119",
                    "state": None,
                },
                "carrier": None,
                "name": "Zoë Müller",
                "phone": None,
                "tracking_number": None,
            },
        })
    if full:
        pi.update({
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
        })
    pi["status"] = "succeeded"
    if full:
        pi.update({"transfer_data": None, "transfer_group": None})
    return {
        "id": "evt_3P" + pi_id[5:],
        "object": "event",
        "api_version": "2024-06-20",
        "created": CREATED,
        "data": {"object": pi},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": stripe_id(rng, "req_", 14), "idempotency_key": f"{order}-{stripe_id(rng, '', 8).lower()}"},
        "type": "payment_intent.succeeded",
    }


def encode(doc):
    return json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8")


def fit(doc, target, rng, cart):
    """Adds cart metadata (if `cart`) while a whole value fits, then stretches the description
    so the document is exactly `target` bytes."""
    pi = doc["data"]["object"]
    meta = pi["metadata"]
    n = 0
    while cart:
        n += 1
        key = f"cart_{n:03d}"
        meta[key] = cart_chunk(rng)
        if len(encode(doc)) > target:
            del meta[key]
            break
    filler = " - gift wrap requested; deliver to the side door, leave with the neighbour at no. 12 if nobody answers."
    delta = target - len(encode(doc))
    assert 0 <= delta <= 2 * len(filler), (target, delta)
    pi["description"] += (filler * 2)[:delta]
    data = encode(doc)
    assert len(data) == target, (target, len(data))
    return data


SPECS = [
    ("stripe-1k.json", 1024, CORE, False),
    ("stripe-2k.json", 2048, MOST, False),
    ("stripe-20k.json", 20480, FULL, True),
    ("stripe-256k.json", 262144, FULL, True),
]


def main():
    for name, target, full, cart in SPECS:
        rng = random.Random(name)
        data = fit(event(rng, full), target, rng, cart)
        json.loads(data)
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
