"""A webhook receiver for the tests: every request is checked with the
Python `pusher` SDK's validate_webhook (the check a Pusher app runs).

Usage: webhook_receiver.py PORT APP_ID KEY SECRET
  POST <any path>   a webhook: validated, recorded, answered with the
                    current status (200 unless set by /control)
  GET  /log         {"valid": [{"at_ms", "time_ms", "events", "headers"}], "invalid": [..]}
  POST /control     body {"status": 500}: the status to answer webhooks with
Prints "listening <port>" once it accepts connections.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pusher

PORT, APP_ID, KEY, SECRET = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
client = pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET)
lock = threading.Lock()
state = {"valid": [], "invalid": [], "status": 200}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/log":
            with lock:
                body = json.dumps({"valid": state["valid"], "invalid": state["invalid"]}).encode()
            return self._answer(200, body)
        self._answer(404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path == "/control":
            with lock:
                state["status"] = json.loads(body)["status"]
            return self._answer(200, b"{}")
        key = self.headers.get("X-Pusher-Key") or ""
        signature = self.headers.get("X-Pusher-Signature") or ""
        data = client.validate_webhook(key=key, signature=signature, body=body.decode("utf-8"))
        at_ms = int(time.time() * 1000)
        with lock:
            if data is None or self.headers.get("Content-Type") != "application/json":
                state["invalid"].append({"at_ms": at_ms, "body": body.decode("utf-8", "replace"),
                                         "key": key, "content_type": self.headers.get("Content-Type")})
                return self._answer(401, b'{"error":"invalid webhook"}')
            status = state["status"]
            if 200 <= status < 300:
                state["valid"].append({
                    "at_ms": at_ms,
                    "time_ms": data["time_ms"],
                    "events": data["events"],
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                })
        self._answer(status, b"{}")


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"listening {PORT}", flush=True)
server.serve_forever()
