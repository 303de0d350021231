"""A tiny webhook receiver for tests: records every request it gets as one JSON line.

It binds to 127.0.0.1 on a free port (or the one given), answers like a Slack-compatible incoming
webhook (HTTP 200, body ``ok``) and appends each request (method, path, headers, JSON body) to a
JSON-lines file. A path starting with ``/status/<code>/`` is answered with that HTTP status, so a
test can send a notification to a webhook that refuses it.

Run it as a program (the molecule scenario of the notify role does)::

    python webhook_receiver.py --log requests.jsonl --port-file port.txt --lifetime 900

or use `start_receiver` from a test, which runs it in a thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

logger = logging.getLogger(__name__)

_STATUS_PATH = re.compile(r"^/status/(?P<code>[1-5][0-9][0-9])(/|$)")


class _Handler(BaseHTTPRequestHandler):
    """Records a request and answers it."""

    log_path: ClassVar[Path]
    lock: ClassVar[threading.Lock] = threading.Lock()

    def _record(self) -> int:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        matched = _STATUS_PATH.match(self.path)
        status = int(matched.group("code")) if matched else HTTPStatus.OK
        entry = {
            "time": time.time(),
            "method": self.command,
            "path": self.path,
            "headers": dict(self.headers.items()),
            "body": body,
            "answered": status,
        }
        with self.lock, self.log_path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(entry, sort_keys=True) + "\n")
        return status

    def _answer(self) -> None:
        status = self._record()
        payload = b"ok" if status < HTTPStatus.BAD_REQUEST else b"invalid_token"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        """Record and answer a POST."""
        self._answer()

    def do_GET(self) -> None:
        """Record and answer a GET."""
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        """Send the access log to the module logger instead of stderr."""
        logger.debug(format, *args)


def make_server(log_path: Path, port: int = 0) -> ThreadingHTTPServer:
    """Create a receiver bound to 127.0.0.1 that appends its requests to log_path.

    Args:
        log_path: The JSON-lines file to append to (created if missing).
        port: The port to bind; 0 picks a free one.

    Returns:
        The server, not yet serving; its port is ``server.server_address[1]``.
    """
    handler = type("Handler", (_Handler,), {"log_path": log_path, "lock": threading.Lock()})
    log_path.touch()
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def start_receiver(log_path: Path) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start a receiver in a daemon thread; call ``server.shutdown()`` to stop it."""
    server = make_server(log_path)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def read_requests(log_path: Path) -> list[dict[str, Any]]:
    """Return the recorded requests, oldest first."""
    if not log_path.exists():
        return []
    lines = log_path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def main(argv: list[str] | None = None) -> None:
    """Serve until the lifetime is over or the process is terminated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True, help="JSON-lines file of requests")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    parser.add_argument("--port-file", type=Path, help="file to write the bound port to")
    parser.add_argument("--pid-file", type=Path, help="file to write the process id to")
    parser.add_argument("--lifetime", type=float, default=900.0, help="seconds before exiting")
    args = parser.parse_args(argv)

    server = make_server(args.log, args.port)
    if args.pid_file:
        args.pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
    if args.port_file:
        temp = args.port_file.with_suffix(".tmp")
        temp.write_text(f"{server.server_address[1]}\n", encoding="utf-8")
        temp.replace(args.port_file)
    timer = threading.Timer(args.lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
