#!/usr/bin/python
"""Bundle evidence files into one tar.gz with a SHA-256 manifest, refusing any secret.

The work is plain Python (collect, find_secrets, manifest_text, write_bundle) so that it can be
imported and tested without Ansible; main() is the thin AnsibleModule wrapper.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: mw_evidence_bundle
short_description: Pack evidence files into a tar.gz with a MANIFEST.sha256, after a secret scan
description:
  - Collects the files matching O(include) below O(base_dir) (glob patterns, C(**) recurses) and
    the files matching O(extra_paths) (absolute glob patterns), and packs them into O(dest) under
    a top directory O(top), with C(MANIFEST.sha256) in it listing every file as
    C(sha256sum --check) reads it.
  - Before packing, every file is scanned for every non-empty value of O(secrets), as raw bytes,
    JSON-escaped and URL-encoded, and inside gzip-compressed files too. When one is found nothing
    is written and the files are returned in RV(offending), naming the secret only by its index
    in O(secrets), never by its value.
  - When O(dest) already holds a bundle with the same manifest the module changes nothing. The
    bundle is written through a temporary file and a rename, with mode 0600.
version_added: "1.0.0"
author:
  - Maintenance window project contributors
options:
  base_dir:
    description: Directory the O(include) patterns and the member names are relative to.
    type: path
    required: true
  include:
    description: Glob patterns relative to O(base_dir); only regular files are taken.
    type: list
    elements: str
    default: []
  extra_paths:
    description:
      - Absolute glob patterns of further files, packed as C(extra/<path without leading />).
    type: list
    elements: str
    default: []
  secrets:
    description: Values that must not appear in any packed file; empty values are ignored.
    type: list
    elements: str
    default: []
    no_log: true
  dest:
    description: Path of the bundle to write.
    type: path
    required: true
  top:
    description: Name of the bundle's top directory.
    type: str
    required: true
attributes:
  check_mode:
    support: full
"""

EXAMPLES = r"""
- name: Pack the run's evidence
  mw_evidence_bundle:
    base_dir: /srv/runs/RUN
    include: [backups/*/SHA256SUMS, validation/**/*]
    secrets: ["{{ mw_registry_db_password }}"]
    dest: /srv/runs/RUN/evidence/evidence-RUN.tar.gz
    top: evidence-RUN
  register: bundle
"""

RETURN = r"""
files:
  description: Member names (relative to the top directory) of the files packed or to be packed.
  type: list
  elements: str
  returned: always
offending:
  description:
    - Files holding a secret, each with the source path and the indexes of the secrets found.
  type: list
  elements: dict
  returned: always
manifest_sha256:
  description: SHA-256 of the MANIFEST.sha256 text.
  type: str
  returned: always
"""

MANIFEST = "MANIFEST.sha256"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Source:
    """One file to pack: where it is and its name in the bundle."""

    path: Path
    name: str


def collect(base_dir: Path, include: list[str], extra_paths: list[str]) -> list[Source]:
    """Find the files to pack.

    Args:
        base_dir: Directory of the relative patterns.
        include: Glob patterns relative to base_dir.
        extra_paths: Absolute glob patterns.

    Returns:
        The files, sorted by member name, each once.
    """
    found: dict[str, Source] = {}
    for pattern in include:
        for path in sorted(base_dir.glob(pattern)):
            if path.is_file() and not path.is_symlink():
                name = path.relative_to(base_dir).as_posix()
                found.setdefault(name, Source(path, name))
    for pattern in extra_paths:
        anchored = Path(pattern)
        matches = sorted(Path(anchored.anchor).glob(str(anchored.relative_to(anchored.anchor))))
        for path in matches:
            if path.is_file():
                name = "extra/" + path.as_posix().lstrip("/")
                found.setdefault(name, Source(path, name))
    return [found[name] for name in sorted(found)]


def _needles(secret: str) -> set[bytes]:
    forms = {secret, json.dumps(secret)[1:-1], urllib.parse.quote(secret, safe="")}
    return {form.encode() for form in forms if form}


def _contents(path: Path) -> list[bytes]:
    data = path.read_bytes()
    contents = [data]
    if data[:2] == b"\x1f\x8b":
        # A damaged gzip file is still scanned as raw bytes above.
        with contextlib.suppress(OSError, EOFError):
            contents.append(gzip.decompress(data))
    return contents


def find_secrets(sources: list[Source], secrets: list[str]) -> list[dict[str, Any]]:
    """Return the files that hold one of the secrets.

    Args:
        sources: The files to scan.
        secrets: The secret values; empty ones are ignored.

    Returns:
        One entry per offending file: its member name, source path and the secrets' indexes.
    """
    needles = [(index, _needles(value)) for index, value in enumerate(secrets) if value]
    offending = []
    for source in sources:
        contents = _contents(source.path)
        hits = [
            index
            for index, forms in needles
            if any(form in content for form in forms for content in contents)
        ]
        if hits:
            offending.append({"name": source.name, "path": str(source.path), "secrets": hits})
    return offending


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_text(sources: list[Source]) -> str:
    """Return the MANIFEST.sha256 text: one `<sha256>  <name>` line per file."""
    return "".join(f"{file_sha256(s.path)}  {s.name}\n" for s in sources)


def existing_manifest(bundle: Path, top: str) -> str | None:
    """Return the manifest inside an existing bundle, or None when there is none to read."""
    if not bundle.is_file():
        return None
    try:
        with tarfile.open(bundle, mode="r:gz") as tar:
            stream = tar.extractfile(f"{top}/{MANIFEST}")
            return stream.read().decode() if stream else None
    except (OSError, EOFError, KeyError, tarfile.TarError, UnicodeDecodeError):
        return None


def write_bundle(bundle: Path, top: str, sources: list[Source], manifest: str) -> None:
    """Write the bundle atomically with mode 0600: the files, then the manifest."""
    handle, temp = tempfile.mkstemp(dir=bundle.parent, prefix=f".{bundle.name}.")
    os.close(handle)
    try:
        with tarfile.open(temp, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            for source in sources:
                info = tar.gettarinfo(str(source.path), arcname=f"{top}/{source.name}")
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode = 0o600
                with source.path.open("rb") as stream:
                    tar.addfile(info, stream)
            data = manifest.encode()
            info = tarfile.TarInfo(f"{top}/{MANIFEST}")
            info.size = len(data)
            info.mode = 0o600
            info.mtime = int(max((s.path.stat().st_mtime for s in sources), default=0))
            tar.addfile(info, io.BytesIO(data))
        Path(temp).chmod(0o600)
        Path(temp).replace(bundle)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def main() -> None:
    """Run the module."""
    module = AnsibleModule(
        argument_spec={
            "base_dir": {"type": "path", "required": True},
            "include": {"type": "list", "elements": "str", "default": []},
            "extra_paths": {"type": "list", "elements": "str", "default": []},
            "secrets": {"type": "list", "elements": "str", "default": [], "no_log": True},
            "dest": {"type": "path", "required": True},
            "top": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    params: dict[str, Any] = module.params
    bundle = Path(params["dest"])
    if not bundle.parent.is_dir() and not module.check_mode:
        module.fail_json(msg=f"directory of the bundle {bundle.parent} does not exist")
    sources = collect(Path(params["base_dir"]), params["include"], params["extra_paths"])
    names = [source.name for source in sources]
    offending = find_secrets(sources, params["secrets"])
    manifest = manifest_text(sources)
    result: dict[str, Any] = {
        "files": names,
        "offending": offending,
        "manifest_sha256": hashlib.sha256(manifest.encode()).hexdigest(),
        "changed": False,
    }
    if offending:
        module.exit_json(**result)
    if existing_manifest(bundle, params["top"]) != manifest:
        result["changed"] = True
        if not module.check_mode:
            write_bundle(bundle, params["top"], sources, manifest)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
