"""A local HTTP server for the pull tests: the same fake API handler that an
``httpx.MockTransport`` takes, served for real on 127.0.0.1 (so the command line,
which builds its own client, can be tested end to end)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable

import httpx


class LocalServer:
    """A real HTTP server on 127.0.0.1 that answers every request with
    ``fake(httpx.Request) -> httpx.Response`` (the handler an httpx.MockTransport takes)."""

    def __init__(self, fake: Callable[[httpx.Request], httpx.Response]) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                req = httpx.Request(self.command, f"http://x{self.path}", content=body,
                                    headers=dict(self.headers))
                resp = outer.fake(req)
                self.send_response(resp.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = _serve

            def log_message(self, *a) -> None:
                pass

        self.fake = fake
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
