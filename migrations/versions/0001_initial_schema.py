"""Initial schema: scoring runs, memory and response scores, running memory importance.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Written out in full (not imported from worker.store.tables), so this revision keeps
creating the same schema whatever the tables module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scoring_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("conversation_id", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("noise_floor", sa.Double(), nullable=False),
        sa.Column("scorer_version", sa.Text(), nullable=False),
        sa.Column("memory_count", sa.Integer(), nullable=False),
        sa.Column("response_count", sa.Integer(), nullable=False),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("response_tokens", sa.BigInteger(), nullable=False),
        sa.Column("duration_seconds", sa.Double(), nullable=False),
        sa.Column("source_topic", sa.Text(), nullable=True),
        sa.Column("source_partition", sa.Integer(), nullable=True),
        sa.Column("source_offset", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint("metric IN ('drop', 'net')", name=op.f("ck_scoring_runs_metric")),
        sa.CheckConstraint(
            "memory_count >= 0 AND response_count >= 0 AND request_count >= 0 "
            "AND prompt_tokens >= 0 AND response_tokens >= 0 AND duration_seconds >= 0",
            name=op.f("ck_scoring_runs_counts_not_negative"),
        ),
        sa.CheckConstraint(
            "(source_topic IS NULL) = (source_partition IS NULL) "
            "AND (source_topic IS NULL) = (source_offset IS NULL)",
            name=op.f("ck_scoring_runs_source_all_or_nothing"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_runs")),
        sa.UniqueConstraint("event_id", name=op.f("uq_scoring_runs_event_id")),
    )
    op.create_index(op.f("ix_scoring_runs_created_at"), "scoring_runs", ["created_at"])

    op.create_table(
        "memory_scores",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("memory_index", sa.Integer(), nullable=False),
        sa.Column("entry_index", sa.Integer(), nullable=False),
        sa.Column("memory_key", sa.Text(), nullable=False),
        sa.Column("importance", sa.Double(), nullable=False),
        sa.Column("divergences", postgresql.ARRAY(sa.Double()), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["scoring_runs.id"],
            name=op.f("fk_memory_scores_run_id_scoring_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_scores")),
        sa.UniqueConstraint(
            "run_id", "memory_index", name=op.f("uq_memory_scores_run_id_memory_index")
        ),
    )
    op.create_index(
        op.f("ix_memory_scores_memory_key_run_id"), "memory_scores", ["memory_key", "run_id"]
    )

    op.create_table(
        "response_scores",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("response_index", sa.Integer(), nullable=False),
        sa.Column("entry_index", sa.Integer(), nullable=False),
        sa.Column("dependence", sa.Double(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["scoring_runs.id"],
            name=op.f("fk_response_scores_run_id_scoring_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_response_scores")),
        sa.UniqueConstraint(
            "run_id", "response_index", name=op.f("uq_response_scores_run_id_response_index")
        ),
    )

    op.create_table(
        "memory_importance",
        sa.Column("memory_key", sa.Text(), nullable=False),
        sa.Column("cumulative_importance", sa.Double(), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("last_importance", sa.Double(), nullable=False),
        sa.Column("last_scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("runs > 0", name=op.f("ck_memory_importance_runs_positive")),
        sa.PrimaryKeyConstraint("memory_key", name=op.f("pk_memory_importance")),
    )
    op.create_index(
        op.f("ix_memory_importance_cumulative_importance"),
        "memory_importance",
        ["cumulative_importance"],
    )


def downgrade() -> None:
    # Indexes and constraints go with their tables; children before the parent.
    op.drop_table("memory_importance")
    op.drop_table("response_scores")
    op.drop_table("memory_scores")
    op.drop_table("scoring_runs")
