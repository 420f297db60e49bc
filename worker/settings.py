"""The one settings object: read from MEMSCORE_* environment variables once, at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.errors import FatalError


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of memscore. Secrets are SecretStr and never appear in repr or logs."""

    model_config = SettingsConfigDict(
        env_prefix="MEMSCORE_", frozen=True, extra="ignore", validate_default=True
    )

    # --- Kafka -----------------------------------------------------------------
    kafka_bootstrap_servers: str = "localhost:9092"
    input_topic: str = "conversation-closed"
    output_topic: str = "memory-scored"
    dlq_topic: str = "conversation-closed.dlq"
    group_id: str = "memscore"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    tls_ca_file: Path | None = None
    # Real Kafka supports idempotent producers; the devstack broker (Tansu) does not.
    kafka_producer_idempotence: bool = True
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # aiokafka enforces this client-side; scoring runs in tasks, so the poll loop
    # never waits on it, but a generous value costs nothing.
    max_poll_interval_seconds: float = Field(default=300.0, gt=0)
    kafka_session_timeout_seconds: float = Field(default=10.0, gt=0)
    kafka_heartbeat_interval_seconds: float = Field(default=3.0, gt=0)

    # --- PostgreSQL ------------------------------------------------------------
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=5, ge=1)

    # --- vLLM ------------------------------------------------------------------
    # Kept out of repr: a URL may carry credentials (http://user:pass@vllm:8000).
    vllm_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:8000"], repr=False
    )
    vllm_api_key: SecretStr | None = None
    vllm_api_key_file: Path | None = None
    model: str = "default"
    # An 8k-token prefill with prompt logprobs on a busy server can take minutes.
    vllm_timeout_seconds: float = Field(default=600.0, gt=0)
    vllm_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    vllm_max_attempts: int = Field(default=6, ge=1)
    retry_base_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=30.0, gt=0)
    # An event that keeps failing this long on a dependency which meanwhile serves other
    # events is parked on the DLQ (class retry_budget); an outage is waited out.
    event_retry_budget_seconds: float = Field(default=1800.0, gt=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=15.0, gt=0)
    # Ask for prompt_token_ids (vLLM >= 0.10.2; older servers ignore the field) so the
    # prompt's tokens are known exactly even when a dict holds top-k candidates.
    vllm_return_token_ids: bool = True

    # --- limits ----------------------------------------------------------------
    max_inflight_requests: int = Field(default=8, ge=1)
    # vLLM materialises ~prompt_tokens x vocabulary x 6 bytes for prompt logprobs.
    max_inflight_tokens: int = Field(default=65_536, ge=1)
    max_inflight_conversations: int = Field(default=16, ge=1)
    max_event_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)

    # --- scoring ---------------------------------------------------------------
    metric: Literal["drop", "net"] = "drop"
    noise_floor: float = Field(default=0.0, ge=0)
    # Which ablations to send (worker/scoring/strategies): exact leave-one-out, or a
    # cheaper estimate of it. auto is LOO whenever LOO fits the cap below.
    strategy: Literal["loo", "hierarchical", "surrogate", "hybrid", "auto"] = "loo"
    # Prompt tokens one conversation may spend, baseline included; unset: no cap. A
    # conversation over it is scored as well as the cap allows and marked capped.
    max_prompt_tokens_per_conversation: int | None = Field(default=None, ge=1)
    # hierarchical: a group is split when leaving it out moves some response by more
    # than this many nats (BENCHMARKS.md, "Scoring strategies", shows how it was chosen).
    hierarchical_threshold: float = Field(default=1.0, ge=0)
    hierarchical_branching: int = Field(default=2, ge=2, le=64)
    # surrogate: random ablations per conversation, each memory's chance to be left out
    # of one, and the Lasso penalty as a share of the one that zeroes every weight.
    surrogate_ablations: int = Field(default=32, ge=1, le=4096)
    surrogate_removal_probability: float = Field(default=0.5, gt=0, lt=1)
    surrogate_alpha_ratio: float = Field(default=0.01, ge=0, le=1)
    # hybrid: surrogate masks sent to find the memories that matter (under a cap, half the
    # requests it allows first, then as many more as the candidates leave spare), and the
    # share of the estimated importance from which a memory gets its exact LOO row (each
    # response's two largest always do).
    hybrid_masks: int = Field(default=16, ge=1, le=4096)
    hybrid_refine_share: float = Field(default=0.02, ge=0, le=1)

    # --- process ---------------------------------------------------------------
    http_host: str = "0.0.0.0"  # noqa: S104 - the metrics port must be reachable by Prometheus
    http_port: int = Field(default=9400, ge=0, le=65535)
    shutdown_grace_seconds: float = Field(default=25.0, gt=0)
    # /healthz fails when the main loop has not ticked for this long.
    liveness_stale_seconds: float = Field(default=60.0, gt=0)
    # Stop the process when this share of the last DLQ_GUARD_WINDOW events went to the DLQ.
    dlq_guard_window: int = Field(default=50, ge=1)
    dlq_guard_ratio: float = Field(default=0.8, gt=0, le=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    @field_validator("vllm_urls", mode="before")
    @classmethod
    def _urls_from_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("vllm_urls")
    @classmethod
    def _urls_look_like_urls(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one vLLM base URL is required")
        for position, url in enumerate(value, start=1):
            if not _is_http_url(url):
                # By position, never quoted: a URL may carry credentials (user:pass@).
                raise ValueError(f"entry {position} of {len(value)} is not an http(s) URL")
        return [url.rstrip("/") for url in value]

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.vllm_api_key is not None and self.vllm_api_key_file is not None:
            raise ValueError("set MEMSCORE_VLLM_API_KEY or MEMSCORE_VLLM_API_KEY_FILE, not both")
        if self.security_protocol.startswith("SASL") and (
            self.sasl_mechanism is None or self.sasl_username is None or self.sasl_password is None
        ):
            raise ValueError(
                "SASL needs MEMSCORE_SASL_MECHANISM, MEMSCORE_SASL_USERNAME "
                "and MEMSCORE_SASL_PASSWORD"
            )
        return self

    def api_key(self) -> str | None:
        """The vLLM API key, read from the file when one is configured."""
        if self.vllm_api_key is not None:
            return self.vllm_api_key.get_secret_value()
        if self.vllm_api_key_file is not None:
            try:
                return self.vllm_api_key_file.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise FatalError(
                    f"MEMSCORE_VLLM_API_KEY_FILE {self.vllm_api_key_file} cannot be read: "
                    f"{exc.strerror}"
                ) from None
        return None

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise FatalError("MEMSCORE_DATABASE_URL is not set")
        return self.database_url.get_secret_value()


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment; a bad value becomes a FatalError naming it."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"MEMSCORE_{'_'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise FatalError(f"invalid settings: {problems}") from None
