"""A webhook receiver for Alertmanager that prints each notification as one JSON line.

The compose stack routes alerts here (``alert-webhook:9095``) so a local stack delivers them
somewhere visible (``docker compose logs alert-webhook``); in production point
``alertmanager/alertmanager.yml`` at your pager or chat bridge instead.
Run: ``python -m app.tools.alertsink --port 9095``.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY_BYTES = 1 << 20


class AlertSinkHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.send_error(413)
            return
        body = self.rfile.read(length)
        try:
            payload = json.loads(body)
        except ValueError:
            self.send_error(400, "body is not JSON")
            return
        line = {"receiver_path": self.path, "notification": payload}
        sys.stdout.write(json.dumps(line, sort_keys=True) + "\n")
        sys.stdout.flush()
        self._reply(200, b'{"status":"received"}')

    def do_GET(self) -> None:  # health checks (the image's HEALTHCHECK asks /health/ready)
        self._reply(200, b'{"status":"ok"}')

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per notification on stdout is the whole log


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9095)
    args = parser.parse_args(argv)
    ThreadingHTTPServer((args.host, args.port), AlertSinkHandler).serve_forever()


if __name__ == "__main__":
    main()
