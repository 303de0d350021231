# ruff: noqa: INP001
"""Write the validation checks' outputs into the run directory in one go.

Reads {"relative/path.json": data, ...} as JSON on standard input and writes each entry as
indented JSON below the directory given as the only argument: directories mode 0700, files
0600, each file replaced atomically. One process instead of one copy task per file keeps the
decision fast when there are many hosts.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main() -> int:
    """Write the outputs; return the exit code."""
    base = Path(sys.argv[1]).resolve()
    outputs = json.load(sys.stdin)
    for relative, data in outputs.items():
        target = (base / relative).resolve()
        if not target.is_relative_to(base):
            sys.stderr.write(f"refusing to write {relative}: outside {base}\n")
            return 2
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=target.parent, delete=False, prefix=".partial-"
        ) as handle:
            json.dump(data, handle, indent=4, sort_keys=True)
            handle.write("\n")
        partial = Path(handle.name)
        partial.chmod(0o600)
        partial.replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
