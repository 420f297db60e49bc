"""The PostgreSQL store of scored runs: tables, the per-event transaction, migrations.

async with ScoreStore.connect(url, pool_size=5) as store:
    await store.save(result, EventSource(topic, partition, offset))
"""

from worker.store.engine import async_database_url, store_unavailable
from worker.store.records import (
    EventSource,
    MemoryHistoryEntry,
    MemoryImportance,
    SaveOutcome,
    StoredRun,
    TrainingCandidate,
)
from worker.store.schema import (
    downgrade_schema,
    find_alembic_config,
    head_revision,
    upgrade_schema,
)
from worker.store.score_store import ScoreStore, ScoreWriter
from worker.store.tables import metadata

__all__ = [
    "EventSource",
    "MemoryHistoryEntry",
    "MemoryImportance",
    "SaveOutcome",
    "ScoreStore",
    "ScoreWriter",
    "StoredRun",
    "TrainingCandidate",
    "async_database_url",
    "downgrade_schema",
    "find_alembic_config",
    "head_revision",
    "metadata",
    "store_unavailable",
    "upgrade_schema",
]
