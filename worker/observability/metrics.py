"""Every Prometheus metric memscore exports, declared once.

Names follow Prometheus conventions: prefix ``memscore_``, base units (seconds,
tokens), ``_total`` for counters. Labels are low-cardinality: outcomes, error
classes, dependency names, endpoint hosts, partitions — never event or memory ids.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from worker import SCORER_VERSION, __version__

REGISTRY = CollectorRegistry(auto_describe=True)

_CONVERSATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800)
_REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

EVENTS_CONSUMED = Counter(
    "memscore_events_consumed_total",
    "Conversation-closed events finished, by outcome (scored, empty, dlq, duplicate).",
    ["outcome"],
    registry=REGISTRY,
)
CONVERSATION_DURATION = Histogram(
    "memscore_conversation_duration_seconds",
    "Wall time to score one conversation (baseline plus every ablation).",
    buckets=_CONVERSATION_BUCKETS,
    registry=REGISTRY,
)
VLLM_REQUEST_DURATION = Histogram(
    "memscore_vllm_request_duration_seconds",
    "Duration of one request to a model server, by endpoint host and outcome.",
    ["endpoint", "outcome"],
    buckets=_REQUEST_BUCKETS,
    registry=REGISTRY,
)
PROMPT_TOKENS_SENT = Counter(
    "memscore_prompt_tokens_sent_total",
    "Prompt tokens sent to model servers in successful scoring requests.",
    registry=REGISTRY,
)
RESPONSE_TOKENS_SCORED = Counter(
    "memscore_response_tokens_scored_total",
    "Assistant-response tokens scored (counted once per conversation).",
    registry=REGISTRY,
)
REQUESTS_PER_CONVERSATION = Histogram(
    "memscore_requests_per_conversation",
    "Model requests one conversation needed (1 baseline + N ablations).",
    buckets=(1, 2, 3, 5, 9, 17, 33, 65, 129, 257),
    registry=REGISTRY,
)
MEMORIES_PER_CONVERSATION = Histogram(
    "memscore_memories_per_conversation",
    "Memory entries in one conversation.",
    buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
PROMPT_TOKENS_PER_CONVERSATION = Histogram(
    "memscore_prompt_tokens_per_conversation",
    "Prompt tokens of one conversation's baseline request.",
    buckets=(256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072),
    registry=REGISTRY,
)
STRATEGY_REQUESTS = Counter(
    "memscore_strategy_requests_total",
    "Model requests of scored conversations (baseline included), by scoring strategy.",
    ["strategy"],
    registry=REGISTRY,
)
STRATEGY_PROMPT_TOKENS = Counter(
    "memscore_strategy_prompt_tokens_total",
    "Prompt tokens of scored conversations (baseline included), by scoring strategy.",
    ["strategy"],
    registry=REGISTRY,
)
MEMORY_ROWS = Counter(
    "memscore_memory_rows_total",
    "Memory rows scored, by strategy and how the row was obtained "
    "(exact, estimated, pruned, skipped, unscored).",
    ["strategy", "kind"],
    registry=REGISTRY,
)
ABLATIONS_COMPLETED = Counter(
    "memscore_ablations_completed_total",
    "Ablation requests finished (progress of conversations being scored).",
    registry=REGISTRY,
)
INFLIGHT_CONVERSATIONS = Gauge(
    "memscore_inflight_conversations", "Conversations being scored now.", registry=REGISTRY
)
INFLIGHT_REQUESTS = Gauge(
    "memscore_inflight_requests", "Model requests in flight now.", registry=REGISTRY
)
INFLIGHT_PROMPT_TOKENS = Gauge(
    "memscore_inflight_prompt_tokens", "Prompt tokens in flight now.", registry=REGISTRY
)
INFLIGHT_LIMIT = Gauge(
    "memscore_inflight_limit",
    "Configured in-flight limits, by resource (conversations, requests, prompt_tokens).",
    ["resource"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "memscore_retries_total",
    "Retried operations, by dependency (vllm, postgres, kafka).",
    ["dependency"],
    registry=REGISTRY,
)
CIRCUIT_STATE = Gauge(
    "memscore_circuit_breaker_state",
    "Circuit breaker state per dependency endpoint: 0 closed, 1 half-open, 2 open.",
    ["dependency", "endpoint"],
    registry=REGISTRY,
)
DEPENDENCY_UP = Gauge(
    "memscore_dependency_up",
    "1 when the dependency answered its last call, 0 while it is failing.",
    ["dependency"],
    registry=REGISTRY,
)
DLQ_EVENTS = Counter(
    "memscore_dlq_events_total",
    "Events parked on the dead-letter topic, by error class.",
    ["error_class"],
    registry=REGISTRY,
)
DB_TRANSACTION_DURATION = Histogram(
    "memscore_db_transaction_duration_seconds",
    "Duration of the per-event write transaction, by outcome (committed, duplicate, error).",
    ["outcome"],
    buckets=_DB_BUCKETS,
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "memscore_consumer_lag",
    "Messages behind on a partition: high watermark minus committed offset.",
    ["topic", "partition"],
    registry=REGISTRY,
)
COMMITTED_OFFSET = Gauge(
    "memscore_committed_offset",
    "Last offset committed on a partition (the next offset to read).",
    ["topic", "partition"],
    registry=REGISTRY,
)
PARTITIONS_ASSIGNED = Gauge(
    "memscore_partitions_assigned", "Partitions assigned to this worker.", registry=REGISTRY
)
CONSUMER_PAUSED = Gauge(
    "memscore_consumer_paused",
    "1 while fetching is paused (in-flight limit reached or a dependency down).",
    registry=REGISTRY,
)
LAST_SCORED_TIMESTAMP = Gauge(
    "memscore_last_scored_timestamp_seconds",
    "Unix time of the last successfully scored and stored event.",
    registry=REGISTRY,
)
PUBLISH_FAILURES = Counter(
    "memscore_results_publish_failures_total",
    "Failed attempts to publish a memory-scored result event.",
    registry=REGISTRY,
)
BUILD_INFO = Info("memscore_build", "Version of memscore and its scorer.", registry=REGISTRY)
BUILD_INFO.info(
    {"version": __version__, "scorer_version": SCORER_VERSION, "python": platform.python_version()}
)

_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "info": ("_info",),
}


def exported_metric_names() -> set[str]:
    """Every sample name /metrics can show, labelled series included before first use."""
    names: set[str] = set()
    for metric in REGISTRY.collect():
        for suffix in _SUFFIXES.get(metric.type, ("",)):
            names.add(metric.name + suffix)
    return names
