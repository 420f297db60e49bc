"""Runs may be scored by the hybrid strategy; running totals keep exact rows apart.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

``hybrid`` (surrogate masks find the memories that matter, exact leave-one-out measures
them) joins the strategies a run may record: the check constraint on
``scoring_runs.strategy`` is replaced by a wider one. Adding it reads scoring_runs once
under the migration's lock (a sequential scan with a trivial predicate). Adding it NOT
VALID and validating later would avoid the scan, but SQLAlchemy's reflection of a NOT
VALID check constraint breaks Alembic's schema comparison, so the schema stays plain.

``memory_importance`` gains ``exact_importance`` and ``exact_runs``: the same running
totals over the runs that measured the memory alone (its rows there ``exact`` or
``skipped``), so a decision about one memory need not mix estimates in. From now on an
``unscored`` row (the token cap left it unmeasured) adds neither importance nor a run;
the totals over every run stored before keep what they counted.

The exact totals are filled from the stored rows: one aggregation over memory_scores,
while the migration holds its locks on scoring_runs and memory_importance, so workers
wait to store for as long as it takes: 4 s for a million memory_scores rows on 2 busy
cores here, so a store of billions wants a maintenance window. Runs whose rows were
deleted before the upgrade cannot be counted. Stop the old workers before upgrading: a worker
that predates this revision adds to the totals over every run but not to the exact ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
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
    op.add_column(
        "memory_importance",
        sa.Column("exact_importance", sa.Double(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "memory_importance",
        sa.Column("exact_runs", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    # As the worker counts from now on: one run per (key, run), exact when every row of
    # the key in that run was measured alone.
    op.execute(
        """
        UPDATE memory_importance t
           SET exact_importance = s.total, exact_runs = s.n
          FROM (SELECT memory_key, sum(total) AS total, count(*) AS n
                  FROM (SELECT memory_key, sum(importance) AS total
                          FROM memory_scores
                         GROUP BY memory_key, run_id
                        HAVING bool_and(row_kind IN ('exact', 'skipped'))) per_run
                 GROUP BY memory_key) s
         WHERE s.memory_key = t.memory_key
        """
    )
    op.create_check_constraint(
        op.f("ck_memory_importance_exact_runs_within_runs"),
        "memory_importance",
        "exact_runs >= 0 AND exact_runs <= runs",
    )


def downgrade() -> None:
    # 0003 cannot say "hybrid". Its runs become "surrogate" (an estimate); each memory
    # row's row_kind still says which rows were measured exactly.
    op.drop_constraint(
        op.f("ck_memory_importance_exact_runs_within_runs"), "memory_importance", type_="check"
    )
    op.drop_column("memory_importance", "exact_runs")
    op.drop_column("memory_importance", "exact_importance")
    op.execute("UPDATE scoring_runs SET strategy = 'surrogate' WHERE strategy = 'hybrid'")
    _replace_strategy_check("'loo', 'hierarchical', 'surrogate'")
