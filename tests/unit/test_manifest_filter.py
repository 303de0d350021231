"""The manifest filter: shape checks on the control node, before any host is touched."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "mw_manifest.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mw_manifest", PLUGIN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


batch = _load().mw_manifest_batch

GOOD: list[dict[str, Any]] = [
    {"protocol": 19, "from": "validate-p18-gates.sh", "to": "validate-p19-gates.sh"},
    {"protocol": 20, "from": "validate-p19-gates.sh", "to": "validate-p20-gates.sh"},
]


def test_entries_become_paths_under_the_scripts_dir() -> None:
    result = batch(GOOD, "scripts/validation/")
    assert result[0]["src"] == "scripts/validation/validate-p18-gates.sh"
    assert result[1]["dest"] == "scripts/validation/validate-p20-gates.sh"
    assert [entry["protocol"] for entry in result] == [19, 20]


def test_protocol_scope_keeps_only_those_entries() -> None:
    assert [entry["protocol"] for entry in batch(GOOD, "s", [20])] == [20]


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ({"protocol": 19}, "must be a list"),
        ("validate.sh", "must be a list"),
        (["validate.sh"], "entry 0 is str"),
        ([{"protocol": 19, "from": "a.sh"}], "entry 0 lacks 'to'"),
        ([{"protocol": "19", "from": "a.sh", "to": "b.sh"}], "protocol '19' is not a whole number"),
        ([{"protocol": 19, "from": "", "to": "b.sh"}], "'from' '' is not a non-empty name"),
        ([{"protocol": 19, "from": "a.sh", "to": "../b.sh"}], "'to' '../b.sh' is not a valid"),
        (
            [{"protocol": 19, "from": "/etc/a.sh", "to": "b.sh"}],
            "'from' '/etc/a.sh' is not a valid",
        ),
        ([{"protocol": 19, "from": "a b.sh", "to": "b.sh"}], "'from' 'a b.sh' is not a valid"),
        ([{"protocol": 19, "from": "a.sh", "to": "b\u00e9.sh"}], "is not a valid"),
        ([{"protocol": 19, "from": "a.sh", "to": "a.sh"}], "renames 'a.sh' to itself"),
        ([{"protocol": 19, "from": "a.sh", "to": "b.sh", "extra": 1}], "unknown keys ['extra']"),
        (
            [
                {"protocol": 19, "from": "a.sh", "to": "c.sh"},
                {"protocol": 20, "from": "b.sh", "to": "c.sh"},
            ],
            "entries 0 and 1 share the target 'c.sh'",
        ),
        (
            [
                {"protocol": 19, "from": "a.sh", "to": "b.sh"},
                {"protocol": 19, "from": "a.sh", "to": "b.sh"},
            ],
            "entries 0 and 1 share the source 'a.sh'",
        ),
    ],
)
def test_malformed_manifests_are_rejected_naming_the_entry(manifest: object, expected: str) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        batch(manifest, "scripts/validation")
    assert expected in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    manifest = [{"protocol": 19, "from": "a.sh"}, {"protocol": "x", "from": "b.sh", "to": "c.sh"}]
    with pytest.raises(AnsibleFilterError) as caught:
        batch(manifest, "scripts/validation")
    assert "entry 0 lacks 'to'" in str(caught.value)
    assert "entry 1: protocol 'x'" in str(caught.value)
