"""Events are identified by (source, id), as CloudEvents define them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

A CloudEvents ``id`` is unique only within its ``source``: two producers may both
send id "42". Runs get an ``event_source`` ('' for bare v1 events and for rows
stored before this revision, which were all keyed by event_id alone) and the
idempotency key becomes (event_source, event_id). NOT NULL with '' rather than
NULL, because a unique constraint treats NULLs as distinct.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "scoring_runs",
        sa.Column("event_source", sa.Text(), server_default=sa.text("''"), nullable=False),
    )
    op.create_unique_constraint(
        op.f("uq_scoring_runs_event_source_event_id"), "scoring_runs", ["event_source", "event_id"]
    )
    op.drop_constraint(op.f("uq_scoring_runs_event_id"), "scoring_runs", type_="unique")


def downgrade() -> None:
    # Fails (unique violation) if two sources stored the same id: that data cannot be
    # represented by revision 0001, and silently dropping runs would be worse.
    op.create_unique_constraint(op.f("uq_scoring_runs_event_id"), "scoring_runs", ["event_id"])
    op.drop_constraint(
        op.f("uq_scoring_runs_event_source_event_id"), "scoring_runs", type_="unique"
    )
    op.drop_column("scoring_runs", "event_source")
