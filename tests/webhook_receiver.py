"""A webhook receiver for the tests: checks each POST's Spool-Signature and records it.

    python tests/webhook_receiver.py --port 8765 --log events.jsonl \
        --secret-env SPOOL_TEST_WEBHOOK_SECRET [--status 500]

Every POST is one JSON line in --log (written and flushed before the answer): the event id
and type from the headers, whether the signature verified, and the body. It answers 204 to
a verified event, 401 to one that is not, and --status (say 500) to every POST when given.
The test starts, kills and restarts it as a separate process, as a user's endpoint would be.
``verify_signature`` is the snippet of docs/webhooks.md, which a unit test keeps identical.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# --- verification snippet (docs/webhooks.md) ---
def verify_signature(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """True when the Spool-Signature header signs this exact body with our secret, and
    its timestamp is at most ``tolerance`` seconds away from now (a replay is refused)."""
    fields = [part.strip().partition("=") for part in header.split(",")]
    stamps = [value for key, _, value in fields if key == "t" and value.isdigit()]
    if not stamps or abs(time.time() - int(stamps[0])) > tolerance:
        return False
    signed = stamps[0].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for key, _, value in fields if key == "v1")
# --- end of snippet ---


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--secret-env", required=True)
    ap.add_argument("--status", type=int, default=None)
    args = ap.parse_args()
    secret = os.environ[args.secret_env]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            valid = verify_signature(secret, self.headers.get("Spool-Signature", ""), body)
            with open(args.log, "a") as f:
                f.write(json.dumps({"id": self.headers.get("Spool-Event-Id"),
                                    "type": self.headers.get("Spool-Event-Type"),
                                    "attempt": self.headers.get("Spool-Delivery-Attempt"),
                                    "valid": valid, "body": json.loads(body)}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.send_response(args.status or (204 if valid else 401))
            self.end_headers()

        def log_message(self, *a):
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
