#!/usr/bin/python3
"""Serve the script registry to the lab's CI runners over HTTP.

GET /health answers 200 when the registry database answers, 503 otherwise.
GET /scripts?protocol=N answers the protocol's registered scripts as a JSON list of
{"protocol", "name", "path"}, sorted by name; without ``protocol`` it answers every script.

Settings come from the environment (systemd loads them from an EnvironmentFile):
REGISTRY_DB_HOST, REGISTRY_DB_PORT, REGISTRY_DB_NAME, REGISTRY_DB_USER, REGISTRY_DB_PASSWORD,
REGISTRY_LISTEN_ADDRESS and REGISTRY_LISTEN_PORT.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pymysql  # type: ignore[import-untyped,unused-ignore]

if TYPE_CHECKING:
    from types import FrameType

logger = logging.getLogger("registry-service")


@dataclass(frozen=True)
class Settings:
    """Connection and listening settings."""

    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_password: str
    listen_address: str
    listen_port: int

    @classmethod
    def from_environment(cls) -> Settings:
        """Read the settings from the environment.

        Returns:
            The settings.

        Raises:
            SystemExit: If a required variable is missing or a port is not a number.
        """
        missing = [
            name
            for name in ("REGISTRY_DB_NAME", "REGISTRY_DB_USER", "REGISTRY_DB_PASSWORD")
            if not os.environ.get(name)
        ]
        if missing:
            msg = f"registry-service: set {', '.join(missing)} in the environment file"
            raise SystemExit(msg)
        try:
            return cls(
                db_host=os.environ.get("REGISTRY_DB_HOST", "127.0.0.1"),
                db_port=int(os.environ.get("REGISTRY_DB_PORT", "3306")),
                db_name=os.environ["REGISTRY_DB_NAME"],
                db_user=os.environ["REGISTRY_DB_USER"],
                db_password=os.environ["REGISTRY_DB_PASSWORD"],
                listen_address=os.environ.get("REGISTRY_LISTEN_ADDRESS", "127.0.0.1"),
                listen_port=int(os.environ.get("REGISTRY_LISTEN_PORT", "8080")),
            )
        except ValueError as error:
            msg = f"registry-service: a port setting is not a number: {error}"
            raise SystemExit(msg) from error


class RegistryHandler(BaseHTTPRequestHandler):
    """Answer the registry's two read-only endpoints."""

    server_version = "registry-service/1"
    settings: Settings

    def _connect(self) -> Any:  # noqa: ANN401 - pymysql ships no type information
        # One connection per request: the window restarts and restores the database, and a
        # fresh connection never serves from a stale session.
        return pymysql.connect(
            host=self.settings.db_host,
            port=self.settings.db_port,
            user=self.settings.db_user,
            password=self.settings.db_password,
            database=self.settings.db_name,
            charset="utf8mb4",
            connect_timeout=5,
            read_timeout=10,
        )

    def _send_json(self, status: HTTPStatus, body: object) -> None:
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """Route a GET request."""
        url = urlsplit(self.path)
        if url.path == "/health":
            self._health()
        elif url.path == "/scripts":
            self._scripts(parse_qs(url.query))
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {url.path}"})

    def _health(self) -> None:
        try:
            connection = self._connect()
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            finally:
                connection.close()
        except pymysql.MySQLError as error:
            logger.warning("Health check failed: %s", error)
            self._send_json(
                HTTPStatus.SERVICE_UNAVAILABLE, {"status": "error", "error": "database unreachable"}
            )
            return
        self._send_json(HTTPStatus.OK, {"status": "ok"})

    def _scripts(self, query: dict[str, list[str]]) -> None:
        protocols = query.get("protocol", [])
        sql = "SELECT protocol, name, path FROM scripts"
        args: tuple[int, ...] = ()
        if protocols:
            try:
                args = (int(protocols[0]),)
            except ValueError:
                self._send_json(
                    HTTPStatus.BAD_REQUEST,
                    {"error": f"protocol must be an integer, got {protocols[0]!r}"},
                )
                return
            sql += " WHERE protocol = %s"
        sql += " ORDER BY protocol, name"
        try:
            connection = self._connect()
            try:
                with connection.cursor() as cursor:
                    cursor.execute(sql, args)
                    rows = cursor.fetchall()
            finally:
                connection.close()
        except pymysql.MySQLError as error:
            logger.warning("Registry query failed: %s", error)
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "registry query failed"})
            return
        scripts = [{"protocol": row[0], "name": row[1], "path": row[2]} for row in rows]
        self._send_json(HTTPStatus.OK, scripts)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        """Send the access log to the journal instead of stderr's raw lines."""
        logger.info("%s %s", self.address_string(), format % args)


def main() -> int:
    """Run the service until SIGTERM.

    Returns:
        The exit code.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    settings = Settings.from_environment()
    RegistryHandler.settings = settings
    server = ThreadingHTTPServer((settings.listen_address, settings.listen_port), RegistryHandler)
    server.daemon_threads = True

    def stop(_signum: int, _frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, so it must not run on its thread.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    logger.info(
        "Serving registry %s on %s:%d",
        settings.db_name,
        settings.listen_address,
        settings.listen_port,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("Stopping")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
