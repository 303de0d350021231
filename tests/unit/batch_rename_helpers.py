"""Shared helpers for the mw_batch_rename tests: load the module, build and fingerprint trees."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "roles" / "script_rename" / "library"
MODULE_FILE = LIBRARY / "mw_batch_rename.py"
BIN = Path(sys.executable).parent


def load_module() -> ModuleType:
    """Import the module file by path, once per pytest run."""
    name = "mw_batch_rename"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, MODULE_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body is processed.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_tree(root: Path, files: dict[str, str | bytes]) -> None:
    """Create ``files`` (relative path -> contents) under ``root``."""
    for rel, contents in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = contents.encode() if isinstance(contents, str) else contents
        path.write_bytes(data)


def snapshot(root: Path) -> dict[str, str]:
    """Fingerprint everything under ``root``, hidden files included: path -> kind and hash."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = f"link:{path.readlink()}"
            elif path.is_dir():
                found[rel] = "dir"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[rel] = f"file:{digest}:{oct(path.stat().st_mode & 0o7777)}"
    return found


def run_module_process(
    tmp_path: Path,
    args: dict[str, Any],
    env: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any] | None]:
    """Run the module file as its own process, the way Ansible's debug entry point does.

    Returns the exit status (negative for a signal) and the parsed result, if any.
    """
    args_file = tmp_path / "module-args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    completed = subprocess.run(
        [sys.executable, str(MODULE_FILE), str(args_file)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=120,
    )
    result = None
    for line in completed.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
    return completed.returncode, result
