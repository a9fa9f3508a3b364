"""engine.store.stamp: what a revision's schema has, and what a database lacks of it (db stamp's check)."""

from __future__ import annotations

import pytest

from engine.errors import StorageError
from engine.store.schema import head_revision
from engine.store.stamp import expected_columns, missing, resolve


def test_expected_columns_follow_the_revision() -> None:
    """The schema of 0007 has grants without account; head's has it; alembic_version is never listed."""
    old, head = expected_columns("0007"), expected_columns("head")
    assert "account" not in old["grants"] and {"account", "is_default"} <= head["grants"]
    assert "alembic_version" not in head and set(old) <= set(head)


def test_missing_names_tables_then_columns_sorted_and_allows_extras() -> None:
    """missing() lists absent tables and columns in order; extra tables and columns do not count."""
    expected = {"b": {"x", "y"}, "a": {"id"}, "c": {"id"}}
    found = {"b": {"y", "extra"}, "c": {"id"}, "mine": {"z"}}
    assert missing(expected, found) == ["table a", "column b.x"]
    assert missing(expected, {**found, "a": {"id"}, "b": {"x", "y"}}) == []


def test_resolve_head_and_unknown() -> None:
    """head resolves to the code's revision, a shipped one to itself; anything else names the known ones."""
    assert resolve("head") == head_revision() and resolve("0007") == "0007"
    with pytest.raises(StorageError, match="unknown revision '0042': this Keyturn has 0001, 0002"):
        resolve("0042")
