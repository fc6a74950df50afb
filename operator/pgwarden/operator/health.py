"""/healthz of a standby replica: alive while it waits for the Lease (kopf serves /healthz once it is active)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path.split("?")[0] == "/healthz"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"standby\n" if ok else b"not found\n")

    def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: not worth a line
        return


def serve(port: int) -> ThreadingHTTPServer:
    """Answer /healthz on `port` in a thread until `shutdown()`."""
    server = ThreadingHTTPServer(("0.0.0.0", port), _Healthz)
    threading.Thread(target=server.serve_forever, name="pgwarden-standby-healthz", daemon=True).start()
    return server
