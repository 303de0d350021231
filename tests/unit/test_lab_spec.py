"""The lab's world parameters as given on the command line."""

from __future__ import annotations

import pytest

from mwctl.errors import UsageError
from mwctl.lab import LabSpec


def test_range_expands_to_every_protocol() -> None:
    assert LabSpec.parse("18-23", 36, 1).protocols == (18, 19, 20, 21, 22, 23)


def test_list_and_ranges_combine_sorted_without_duplicates() -> None:
    assert LabSpec.parse("21,3-5,4", 12, 7).protocols == (3, 4, 5, 21)


def test_same_arguments_make_equal_specs() -> None:
    assert LabSpec.parse("3-5", 12, 7) == LabSpec.parse("3-5", 12, 7)
    assert LabSpec.parse("3-5", 12, 7) != LabSpec.parse("3-5", 12, 8)


def test_default_spec_is_the_plans_world() -> None:
    spec = LabSpec()
    assert spec.protocols == tuple(range(18, 24))
    assert spec.scripts >= 30


@pytest.mark.parametrize("text", ["", "a-b", "18-", "23-18", "-3", "18..23"])
def test_malformed_protocols_are_rejected_with_the_value(text: str) -> None:
    with pytest.raises(UsageError, match="--protocols") as caught:
        LabSpec.parse(text, 12, 1)
    assert repr(text) in str(caught.value)
    assert caught.value.exit_code == UsageError.exit_code
