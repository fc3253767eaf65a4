"""Real local HTTP receivers (threaded, 127.0.0.1) that record every request.

``Receiver.script`` is a list of responses handed out in order (status, headers, body,
delay); when it is empty ``default`` answers. Tests read ``requests`` afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    at: float = field(default_factory=time.time)

    def json(self):
        return json.loads(self.body)

    def form(self) -> dict:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}


class Receiver:
    def __init__(self, default=(200, {}, b"ok")):
        self.default = default
        self.script: list = []
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parsed = urlparse(self.path)
                rec = Recorded(self.command, parsed.path, {k: v[-1] for k, v in parse_qs(parsed.query).items()},
                               dict(self.headers.items()), body)
                with receiver.arrived:
                    response = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver.requests.append(rec)
                    receiver.arrived.notify_all()
                status, headers, payload = response[:3]
                delay = response[3] if len(response) > 3 else 0
                if delay:
                    time.sleep(delay)
                payload = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        deadline = time.time() + timeout
        with self.arrived:
            while len(self.requests) < count and time.time() < deadline:
                self.arrived.wait(max(0.0, deadline - time.time()))
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
