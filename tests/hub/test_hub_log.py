"""What a hub says when it starts: its own lines, not its libraries' chatter."""

from __future__ import annotations


def test_start_log_says_what_matters(start_hub, tmp_path):
    first = start_hub()
    assert not [line for line in first.lines if "alembic" in line or "Context impl" in line]
    assert any("database schema upgraded from empty to revision" in line for line in first.lines)
    assert any("created the first admin token" in line for line in first.lines)
    first.stop()
    again = start_hub(data=first.data)  # the schema is current: nothing to say of it
    assert not [line for line in again.lines if "alembic" in line or "schema" in line]
    assert not any("admin token" in line for line in again.lines)
