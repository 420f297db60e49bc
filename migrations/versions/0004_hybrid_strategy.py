"""Runs may be scored by the hybrid strategy.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

``hybrid`` (surrogate masks find the memories that matter, exact leave-one-out measures
them) joins the strategies a run may record: the check constraint on
``scoring_runs.strategy`` is replaced by a wider one. Adding it reads scoring_runs once
under the migration's lock (a sequential scan with a trivial predicate). Adding it NOT
VALID and validating later would avoid the scan, but SQLAlchemy's reflection of a NOT
VALID check constraint breaks Alembic's schema comparison, so the schema stays plain.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _replace_strategy_check(strategies: str) -> None:
    op.drop_constraint(op.f("ck_scoring_runs_strategy"), "scoring_runs", type_="check")
    op.create_check_constraint(
        op.f("ck_scoring_runs_strategy"), "scoring_runs", f"strategy IN ({strategies})"
    )


def upgrade() -> None:
    _replace_strategy_check("'loo', 'hierarchical', 'surrogate', 'hybrid'")


def downgrade() -> None:
    # 0003 cannot say "hybrid". Its runs become "surrogate" (an estimate); each memory
    # row's row_kind still says which rows were measured exactly.
    op.execute("UPDATE scoring_runs SET strategy = 'surrogate' WHERE strategy = 'hybrid'")
    _replace_strategy_check("'loo', 'hierarchical', 'surrogate'")
