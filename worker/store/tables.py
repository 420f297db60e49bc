"""The PostgreSQL schema of scored runs, as SQLAlchemy Core tables (Alembic's target)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

# Deterministic constraint names, so migrations can drop what they created and
# autogenerate compares like with like.
metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

#: One row per stored event. Its ``created_at`` (the transaction's now()) is the
#: time every memory and response row of the run was scored.
scoring_runs = Table(
    "scoring_runs",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    # CloudEvents `source` ('' for a bare v1 event): an id is unique only within it.
    Column("event_source", Text, nullable=False, server_default=text("''")),
    Column("event_id", Text, nullable=False),
    Column("conversation_id", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("noise_floor", Double, nullable=False),
    Column("scorer_version", Text, nullable=False),
    Column("memory_count", Integer, nullable=False),
    Column("response_count", Integer, nullable=False),
    Column("request_count", Integer, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("response_tokens", BigInteger, nullable=False),
    Column("duration_seconds", Double, nullable=False),
    # Which strategy chose the ablations (auto stores the one it chose), and whether the
    # prompt-token cap stopped it short of its own plan.
    Column("strategy", Text, nullable=False, server_default=text("'loo'")),
    Column("capped", Boolean, nullable=False, server_default=text("false")),
    # Where the event came from; NULL for `memscore score` and other offline runs.
    Column("source_topic", Text),
    Column("source_partition", Integer),
    Column("source_offset", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The idempotency key: a redelivered event conflicts here and changes nothing.
    UniqueConstraint("event_source", "event_id"),
    CheckConstraint("metric IN ('drop', 'net')", name="metric"),
    CheckConstraint("strategy IN ('loo', 'hierarchical', 'surrogate', 'hybrid')", name="strategy"),
    CheckConstraint(
        "memory_count >= 0 AND response_count >= 0 AND request_count >= 0 "
        "AND prompt_tokens >= 0 AND response_tokens >= 0 AND duration_seconds >= 0",
        name="counts_not_negative",
    ),
    CheckConstraint(
        "(source_topic IS NULL) = (source_partition IS NULL) "
        "AND (source_topic IS NULL) = (source_offset IS NULL)",
        name="source_all_or_nothing",
    ),
)
# Serves the time-window queries (training candidates join response_scores to the
# runs of the window) and retention deletes, which cascade to the score rows.
Index(None, scoring_runs.c.created_at)

#: One row per memory of a run: its importance (row sum) and the matrix row itself.
memory_scores = Table(
    "memory_scores",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column(
        "run_id",
        BigInteger,
        ForeignKey(scoring_runs.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("memory_index", Integer, nullable=False),
    Column("entry_index", Integer, nullable=False),
    Column("memory_key", Text, nullable=False),
    Column("importance", Double, nullable=False),
    # divergences[j]: what response j lost without this memory (nats); float8[] keeps
    # every bit of the float64 matrix.
    Column("divergences", ARRAY(Double), nullable=False),
    # How the row was obtained: exact, estimated, pruned, skipped or unscored (RowKind).
    Column("row_kind", Text, nullable=False, server_default=text("'exact'")),
    CheckConstraint(
        "row_kind IN ('exact', 'estimated', 'pruned', 'skipped', 'unscored')", name="row_kind"
    ),
    # Its leading run_id also serves the FK's cascade and loading a run's rows.
    UniqueConstraint("run_id", "memory_index"),
)
# A memory's history: every run that scored it, newest first (created_at via the run).
Index(None, memory_scores.c.memory_key, memory_scores.c.run_id)

#: One row per assistant response of a run: how much it depended on memory.
response_scores = Table(
    "response_scores",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column(
        "run_id",
        BigInteger,
        ForeignKey(scoring_runs.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("response_index", Integer, nullable=False),
    Column("entry_index", Integer, nullable=False),
    Column("dependence", Double, nullable=False),
    Column("token_count", Integer, nullable=False),
    # Training candidates are found through the run, not a copy of created_at here:
    # a candidate must name its event and conversation, so the query joins
    # scoring_runs anyway; the window is a range scan on ix_scoring_runs_created_at
    # and each run has only a handful of responses, reached through this
    # constraint's (run_id, ...) index. One source of truth for the time, no
    # denormalised column to keep in step.
    UniqueConstraint("run_id", "response_index"),
)

#: The running total per memory, what the memory graph reads. Keyed by the memory
#: key itself: the upsert conflicts on it, and a surrogate identity would burn a
#: sequence value on every conflicting upsert for nothing.
memory_importance = Table(
    "memory_importance",
    metadata,
    Column("memory_key", Text, primary_key=True),
    Column("cumulative_importance", Double, nullable=False),
    Column("runs", BigInteger, nullable=False),
    Column("last_importance", Double, nullable=False),
    Column("last_scored_at", DateTime(timezone=True), nullable=False),
    # The same totals over the rows measured alone (row_kind exact or skipped): what a
    # decision about one memory should read when some runs were estimated.
    Column("exact_importance", Double, nullable=False, server_default=text("0")),
    Column("exact_runs", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("runs > 0", name="runs_positive"),
    CheckConstraint("exact_runs >= 0 AND exact_runs <= runs", name="exact_runs_within_runs"),
)
# Top memories overall: ORDER BY cumulative_importance DESC reads this backwards.
Index(None, memory_importance.c.cumulative_importance)

__all__ = ["memory_importance", "memory_scores", "metadata", "response_scores", "scoring_runs"]
