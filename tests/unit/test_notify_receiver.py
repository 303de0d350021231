"""The webhook receiver the notify role's molecule scenario sends its notifications to."""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

HELPER = Path(__file__).resolve().parents[1] / "helpers" / "webhook_receiver.py"


@pytest.fixture(scope="module")
def receiver_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("webhook_receiver", HELPER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def receiver(receiver_module: ModuleType, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "requests.jsonl"
    server, thread = receiver_module.start_receiver(log)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _post(url: str, payload: dict[str, Any], token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 - a local http URL built by the test
        url, data=json.dumps(payload).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_binds_to_loopback_on_a_free_port(receiver: tuple[str, Path]) -> None:
    url, _ = receiver
    assert url.startswith("http://127.0.0.1:")
    assert int(url.rsplit(":", 1)[1]) > 0


def test_answers_like_an_incoming_webhook(receiver: tuple[str, Path]) -> None:
    url, _ = receiver
    assert _post(f"{url}/hook", {"text": "hello"}) == (200, b"ok")


def test_records_path_headers_and_json_body(
    receiver: tuple[str, Path], receiver_module: ModuleType
) -> None:
    url, log = receiver
    _post(f"{url}/hook", {"text": "phase started", "username": "mw"}, token="t0ken")  # noqa: S106 - a test value
    (entry,) = receiver_module.read_requests(log)
    assert entry["method"] == "POST"
    assert entry["path"] == "/hook"
    assert entry["headers"]["Authorization"] == "Bearer t0ken"
    assert entry["body"] == {"text": "phase started", "username": "mw"}


def test_status_path_answers_with_that_status(
    receiver: tuple[str, Path], receiver_module: ModuleType
) -> None:
    url, log = receiver
    status, _ = _post(f"{url}/status/403/hook", {"text": "refused"})
    assert status == 403
    assert receiver_module.read_requests(log)[0]["answered"] == 403


def test_keeps_every_request_in_order(
    receiver: tuple[str, Path], receiver_module: ModuleType
) -> None:
    url, log = receiver
    for number in range(5):
        _post(f"{url}/hook", {"text": f"message {number}"})
    texts = [entry["body"]["text"] for entry in receiver_module.read_requests(log)]
    assert texts == [f"message {number}" for number in range(5)]


def test_main_writes_port_and_pid_files(receiver_module: ModuleType, tmp_path: Path) -> None:
    log, port_file, pid_file = tmp_path / "r.jsonl", tmp_path / "port", tmp_path / "pid"
    receiver_module.main(
        [
            "--log",
            str(log),
            "--port-file",
            str(port_file),
            "--pid-file",
            str(pid_file),
            "--lifetime",
            "0.2",
        ]
    )
    assert int(port_file.read_text()) > 0
    assert int(pid_file.read_text()) > 0
    assert log.exists()
