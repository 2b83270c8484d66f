"""Speed and memory of the operations commands on the local pipeline: fills a `doorbell dev`
database with EVENTS signed Stripe deliveries (2 KB each; one in ten lacks
`data.object.amount_received`, so the shipped handler rejects it to the dead-letter queue),
then runs each command under `/usr/bin/time -v` and reports its wall time (seconds) and peak
resident set size (MiB).

Usage: python3 bench/ops_local.py PATH/TO/doorbell DB_FILE [EVENTS]
"""
import concurrent.futures, hashlib, hmac, json, os, signal, socket, sqlite3, subprocess, sys, time, http.client
binary, db = sys.argv[1], sys.argv[2]
events = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000
for f in (db, db + "-wal", db + "-shm"):
    if os.path.exists(f): os.remove(f)
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
dev = subprocess.Popen([binary, "dev", "--listen", f"127.0.0.1:{port}", "--db", db], env={**os.environ, "RUST_LOG": "off"})
for _ in range(100):
    try: socket.create_connection(("127.0.0.1", port), 0.2).close(); break
    except OSError: time.sleep(0.1)
secret = b"whsec_doorbell_local_development_only"
here = os.path.dirname(os.path.abspath(__file__))
sample = json.load(open(os.path.join(here, "..", "cli", "samples", "stripe-payment_intent.succeeded.json")))

def send(chunk):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in chunk:
        doc = json.loads(json.dumps(sample)); doc["id"] = f"evt_ops_{i:06}"
        doc["data"]["object"]["id"] = f"pi_ops_{i:06}"
        if i % 10 == 0: del doc["data"]["object"]["amount_received"]
        body = json.dumps(doc).encode(); t = int(time.time())
        sig = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        c.request("POST", "/webhooks/stripe", body, {"content-type": "application/json", "stripe-signature": f"t={t},v1={sig}"})
        r = c.getresponse(); r.read(); assert r.status == 200, r.status
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    list(ex.map(send, [range(k, events, 8) for k in range(8)]))
deadline = time.time() + 300
while time.time() < deadline:
    n = sqlite3.connect(db, timeout=10).execute("select count(*) from webhook_events where status <> 'IN_PROGRESS'").fetchone()[0]
    if n >= events: break
    time.sleep(0.5)
dev.send_signal(signal.SIGINT); dev.wait(timeout=60)

def run(*args):
    out = subprocess.run(["/usr/bin/time", "-v", binary, *args, "--db", db], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    wall = rss = None
    for line in out.stderr.splitlines():
        if "Elapsed (wall clock)" in line:
            t = line.split()[-1].split(":"); wall = float(t[-1]) + 60 * float(t[-2])
        if "Maximum resident set size" in line: rss = int(line.split()[-1]) / 1024
    return {"command": " ".join(args), "seconds": round(wall, 2), "max_rss_mib": round(rss, 1), "stdout_lines": len(out.stdout.splitlines())}

results = [
    run("events", "ls"),
    run("events", "ls", "--limit", "1000", "--json"),
    run("events", "ls", "--status", "failed", "--limit", "5000", "--json"),
    run("events", "ls", "--type", "payment_intent.*", "--source", "stripe", "--limit", "10"),
    run("events", "show", "evt_ops_000010"),
    run("dlq", "ls", "--max", "5000", "--json"),
    run("dlq", "redrive", "--all", "--dry-run"),
    run("replay", "--include-processed", "--dry-run"),
    run("status"),
    run("dlq", "redrive", "--all"),
]
print(json.dumps({"binary": binary, "events": events, "results": results}, indent=1))
