#!/usr/bin/env python3
"""Soak test: the release service at capacity for a fixed time; RSS must stay flat and every
request must get exactly one answer.

Starts `target/release/classify-service` with the real EfficientNet-Lite0 (`--model-dir`; so
that inference, not decoding, is what limits throughput and the queue really fills; `demo` for
the embedded colour model) on a free loopback port (nothing else is ever contacted), keeps `--clients` connections (default: workers + queue capacity + 2, so the queue
is always full and some requests are shed) posting the sample images and photos (`generated/samples`, recursively) in a loop, and samples
the service's RSS from /proc every 5 s. Passes when:
  * every request got an HTTP answer: 200, or 503 with Retry-After (documented load shedding);
    no connection error, no other status;
  * RSS over the last fifth of the run exceeds that of the second fifth (after warm-up) by at
    most max(10 %, 16 MiB).
Prints one JSON summary line. Usage (after `cargo xtask setup && cargo build --release`):

    python3 service/scripts/soak.py --seconds 600
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--clients", type=int, default=0)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/classify-service"))
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "generated/models/efficientnet-lite0"),
                    help="model directory to serve, or `demo` for the embedded colour model")
    args = ap.parse_args()
    clients = args.clients or args.workers + args.queue + 2
    samples = os.path.join(ROOT, "generated/samples")
    images = []
    kinds = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
    for folder, _, names in sorted(os.walk(samples)):
        for name in sorted(names):
            kind = kinds.get(os.path.splitext(name)[1].lower())
            if kind:
                with open(os.path.join(folder, name), "rb") as f:
                    images.append((kind, f.read()))
    model = ["--demo"] if args.model_dir == "demo" else ["--model-dir", args.model_dir]
    port = free_port()
    env = dict(os.environ, DLR_LIBRARY_PATH=os.path.join(ROOT, "generated/libdlr/libdlr.so"))
    service = subprocess.Popen(
        [args.binary, *model, "--listen", f"127.0.0.1:{port}", "--workers", str(args.workers),
         "--queue-capacity", str(args.queue), "--log-filter", "error"],
        env=env)
    try:
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            sys.exit("the service did not become ready")

        stop = time.monotonic() + args.seconds
        lock = threading.Lock()
        counts = {"ok": 0, "shed": 0, "bad": 0, "errors": 0}
        problems = []

        def client(i):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            n = i
            while time.monotonic() < stop:
                kind, body = images[n % len(images)]
                n += 1
                try:
                    conn.request("POST", "/classify", body=body, headers={"Content-Type": kind})
                    r = conn.getresponse()
                    r.read()
                    key = "ok" if r.status == 200 else \
                        "shed" if r.status == 503 and r.getheader("Retry-After") else "bad"
                    if key == "bad":
                        problems.append(f"status {r.status}")
                except (OSError, http.client.HTTPException) as e:
                    key = "errors"
                    problems.append(repr(e))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    counts[key] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        samples_rss = []
        while time.monotonic() < stop:
            samples_rss.append(rss_kib(service.pid))
            time.sleep(5)
        for t in threads:
            t.join()
        fifth = max(1, len(samples_rss) // 5)
        early = max(samples_rss[fifth:2 * fifth] or samples_rss[:1])
        late = max(samples_rss[-fifth:])
        allowed = max(early * 0.10, 16 * 1024)
        flat = late - early <= allowed
        answered = counts["bad"] == 0 and counts["errors"] == 0
        summary = dict(seconds=args.seconds, model=os.path.basename(args.model_dir),
                       images=len(images), clients=clients, workers=args.workers,
                       queue=args.queue, **counts,
                       rps=round((counts["ok"] + counts["shed"]) / args.seconds, 1),
                       rss_early_mib=round(early / 1024, 1), rss_late_mib=round(late / 1024, 1),
                       rss_flat=flat, every_request_answered=answered,
                       problems=problems[:5])
        print(json.dumps(summary))
        sys.exit(0 if flat and answered else 1)
    finally:
        service.terminate()
        service.wait(timeout=30)


if __name__ == "__main__":
    main()
