"""Runs say which strategy scored them and how each memory's row was obtained.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Not every run is exact leave-one-out any more: a run records its ``strategy`` (``loo``,
``hierarchical``, ``surrogate``; auto stores the one it chose) and whether the prompt-token
cap stopped it short (``capped``); each memory row records its ``row_kind`` (``exact``,
``estimated``, ``pruned``, ``skipped``, ``unscored``). Rows stored before this revision
were all exact leave-one-out within no cap, which is what the server defaults say.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "scoring_runs",
        sa.Column("strategy", sa.Text(), server_default=sa.text("'loo'"), nullable=False),
    )
    op.add_column(
        "scoring_runs",
        sa.Column("capped", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_scoring_runs_strategy"),
        "scoring_runs",
        "strategy IN ('loo', 'hierarchical', 'surrogate')",
    )
    op.add_column(
        "memory_scores",
        sa.Column("row_kind", sa.Text(), server_default=sa.text("'exact'"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_memory_scores_row_kind"),
        "memory_scores",
        "row_kind IN ('exact', 'estimated', 'pruned', 'skipped', 'unscored')",
    )


def downgrade() -> None:
    # Estimated rows then read as exact ones: revision 0002 cannot say otherwise.
    op.drop_constraint(op.f("ck_memory_scores_row_kind"), "memory_scores", type_="check")
    op.drop_column("memory_scores", "row_kind")
    op.drop_constraint(op.f("ck_scoring_runs_strategy"), "scoring_runs", type_="check")
    op.drop_column("scoring_runs", "capped")
    op.drop_column("scoring_runs", "strategy")
