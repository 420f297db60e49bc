"""The one error tree of memscore.

    MemscoreError
    ├── PoisonEventError          retrying cannot help: the event goes to the DLQ
    │   ├── EventDecodeError        bytes are not JSON / not UTF-8
    │   ├── EventTooLargeError      over MAX_EVENT_BYTES
    │   ├── EventValidationError    JSON that does not match the schema (names the field)
    │   ├── ContextLengthError      the model rejects the conversation as too long
    │   ├── ModelRequestRejected    any other 4xx from the model server
    │   ├── RetryBudgetExhausted    failed for EVENT_RETRY_BUDGET_SECONDS while the
    │   │                           dependency served other events
    │   └── ResponseLocateError     an assistant response cannot be found in the tokens
    ├── InferenceResponseError    the server answered 2xx with a body we cannot trust
    │                             (NaN, missing field, length mismatch); retried a few times
    ├── DependencyUnavailable     retrying later helps: never DLQ'd
    │   ├── InferenceUnavailable    connection error, timeout, 429, 5xx
    │   └── StoreUnavailable        PostgreSQL unreachable
    └── FatalError                the process must stop (bad settings)
        └── DlqGuardTripped         too many recent events went to the DLQ

Errors carry data (which event, which response, why) in attributes and in their
message, but never memory or message text: that is users' personal data.
"""

from __future__ import annotations


class MemscoreError(Exception):
    """Base of every error memscore raises on purpose."""

    #: A short, stable, low-cardinality name for metrics labels and DLQ headers.
    error_class: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PoisonEventError(MemscoreError):
    """The event itself is bad; the same input will fail the same way again."""

    error_class = "poison"


class EventDecodeError(PoisonEventError):
    error_class = "decode"


class EventTooLargeError(PoisonEventError):
    error_class = "too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"event is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class EventValidationError(PoisonEventError):
    error_class = "schema"

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


class ContextLengthError(PoisonEventError):
    error_class = "context_length"


class ModelRequestRejected(PoisonEventError):
    error_class = "model_rejected"

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class RetryBudgetExhausted(PoisonEventError):
    """This event kept failing on a dependency that meanwhile served other events.

    An out-of-memory prefill on one long conversation, say: retrying it for ever would
    hold its partition's commits. A real outage (every event failing) never gets here.
    """

    error_class = "retry_budget"

    def __init__(self, dependency: str, failing_seconds: float, last_error: str) -> None:
        super().__init__(
            f"{dependency} kept failing for this event for {failing_seconds:.0f} s while it "
            f"served other events (last error: {last_error})"
        )
        self.dependency = dependency
        self.failing_seconds = failing_seconds


class ResponseLocateError(PoisonEventError):
    error_class = "response_locate"

    def __init__(self, message: str, response_index: int) -> None:
        super().__init__(message)
        self.response_index = response_index


class InferenceResponseError(MemscoreError):
    """A 2xx answer whose body cannot be trusted (malformed, NaN, wrong length)."""

    error_class = "bad_response"


class DependencyUnavailable(MemscoreError):
    """A dependency is down or overloaded; retry later, never DLQ."""

    error_class = "unavailable"

    def __init__(self, message: str, dependency: str) -> None:
        super().__init__(message)
        self.dependency = dependency


class InferenceUnavailable(DependencyUnavailable):
    error_class = "inference_unavailable"

    def __init__(self, message: str, endpoint: str = "") -> None:
        super().__init__(message, dependency="vllm")
        self.endpoint = endpoint


class StoreUnavailable(DependencyUnavailable):
    error_class = "store_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, dependency="postgres")


class FatalError(MemscoreError):
    """The process cannot go on (bad configuration, DLQ guard tripped)."""

    error_class = "fatal"


class DlqGuardTripped(FatalError):
    """Too many recent events went to the DLQ: likely a bad deploy, not bad events."""

    error_class = "dlq_guard"
