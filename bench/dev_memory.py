"""Memory of `doorbell dev` under large deliveries: 60 signed Stripe deliveries of 2 MB each
(over the local queue's 256 KiB, so each envelope is claim-checked into the --db file), one at a
time; reports the resident set size (VmRSS, MiB) before, at its peak while they are accepted
and processed, and two seconds after the last one is processed.

Usage: python3 bench/dev_memory.py PATH/TO/doorbell DB_FILE
"""
import hashlib, hmac, json, os, signal, socket, sqlite3, subprocess, sys, time, http.client
binary, db = sys.argv[1], sys.argv[2]
for f in (db, db+"-wal", db+"-shm"):
    if os.path.exists(f): os.remove(f)
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen([binary, "dev", "--listen", f"127.0.0.1:{port}", "--db", db], env={**os.environ, "RUST_LOG": "off"})
def rss():
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) / 1024
for _ in range(100):
    try: socket.create_connection(("127.0.0.1", port), 0.2).close(); break
    except OSError: time.sleep(0.1)
time.sleep(0.3)
start = rss()
secret = b"whsec_doorbell_local_development_only"
sample = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli", "samples", "stripe-payment_intent.succeeded.json")))
peak = start
for i in range(60):
    sample["id"] = f"evt_big_{i}"; sample["data"]["object"]["description"] = "x" * 2_000_000
    body = json.dumps(sample).encode()
    t = int(time.time())
    sig = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/webhooks/stripe", body, {"content-type": "application/json", "stripe-signature": f"t={t},v1={sig}"})
    r = c.getresponse(); r.read(); assert r.status == 200, r.status
    peak = max(peak, rss())
deadline = time.time() + 60
while time.time() < deadline:
    try:
        n = sqlite3.connect(db, timeout=10).execute("select count(*) from webhook_events where status='PROCESSED'").fetchone()[0]
    except sqlite3.Error: n = 0
    peak = max(peak, rss())
    if n >= 60: break
    time.sleep(0.2)
time.sleep(2)
end = rss()
p.send_signal(signal.SIGINT); p.wait(timeout=30)
print(json.dumps({"binary": binary, "rss_start_mib": round(start,1), "rss_peak_mib": round(peak,1), "rss_after_mib": round(end,1), "processed": n}))
