"""Every telemetry name relaygate emits: span attributes, span and event names, metric names.

OpenTelemetry GenAI semantic conventions (``gen_ai.*``), HTTP and error conventions where they
exist; ``relaygate.*`` for the gateway's own. Names are a public contract: the dashboards,
alert rules and README metric table are built on them, and a test checks they agree.
"""

from __future__ import annotations

from typing import Final

# -- OpenTelemetry semantic conventions -------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_ROUTE: Final = "http.route"
ERROR_TYPE: Final = "error.type"

GEN_AI_PROVIDER_NAMES: Final = {"google": "gcp.gemini", "bedrock": "aws.bedrock"}
"""``gen_ai.provider.name`` values of the GenAI conventions where they differ from the
provider's name in configs (any other provider is named as configs name it)."""


def gen_ai_provider_name(provider: str) -> str:
    """The ``gen_ai.provider.name`` of a config's ``provider``."""
    return GEN_AI_PROVIDER_NAMES.get(provider, provider)


# -- relaygate's own span attributes ----------------------------------------------------------
CONFIG_ID: Final = "relaygate.config.id"
TARGET_PATH: Final = "relaygate.target.path"
TARGET_NAME: Final = "relaygate.target.name"
STRATEGY_MODE: Final = "relaygate.strategy.mode"
STRATEGY_PATH: Final = "relaygate.strategy.path"
ATTEMPT: Final = "relaygate.attempt"
ATTEMPTS: Final = "relaygate.attempts"
BACKOFF_S: Final = "relaygate.backoff_s"
FALLBACK_REASON: Final = "relaygate.fallback.reason"
OUTCOME: Final = "relaygate.outcome"
REQUEST_ID: Final = "relaygate.request_id"
PORTKEY_TRACE_ID: Final = "relaygate.portkey_trace_id"
STREAM: Final = "relaygate.stream"
TIMEOUT_MS: Final = "relaygate.timeout_ms"
TIMEOUT_KIND: Final = "relaygate.timeout.kind"
"""Which deadline a ``relaygate.timeout`` event or span is about: ``request_timeout``,
``first_token``, ``deadline`` (the request's overall deadline) or ``stream_idle``."""
SERVED_BY: Final = "relaygate.served_by"
SAMPLING_REASON: Final = "relaygate.sampling.reason"
ROUTE: Final = "relaygate.route"

# -- span names (fixed strings: no per-request formatting) ------------------------------------
SPAN_AUTH: Final = "relaygate.auth"
SPAN_CONFIG: Final = "relaygate.config_resolve"
SPAN_STRATEGY: Final = "relaygate.strategy"
SPAN_RETRY: Final = "relaygate.retry"
SPAN_TIMEOUT: Final = "relaygate.timeout"

# -- span events ------------------------------------------------------------------------------
EVENT_RETRY: Final = "relaygate.retry"
EVENT_FALLBACK: Final = "relaygate.fallback"
EVENT_TIMEOUT: Final = "relaygate.timeout"
EVENT_FIRST_CHUNK: Final = "relaygate.first_chunk"
EVENT_STREAM_ERROR: Final = "relaygate.stream_error"
EVENT_EXHAUSTED: Final = "relaygate.exhausted"
EVENT_ATTEMPT_BUDGET_SPENT: Final = "relaygate.attempt_budget_spent"
EVENT_CIRCUIT_OPEN: Final = "relaygate.circuit_open"
"""A target skipped because its circuit was open (attributes: target path, state)."""
EVENT_CIRCUIT_TRANSITION: Final = "relaygate.circuit_transition"
"""A circuit changed state during this attempt (attributes: from, to)."""
CIRCUIT_STATE: Final = "relaygate.circuit.state"
"""Fallback or retry stopped because the request's `max_attempts_per_request` was spent."""
EVENT_FINAL_ERROR: Final = "relaygate.final_error"
"""Retry or fallback not made because the upstream's error is final (a content-policy
refusal...); attributes: the error code and what was stopped."""

# -- span event attributes --------------------------------------------------------------------
# One scheme: an event's own facts are named `<event name>.<fact>`; the entities it is about
# keep their span attribute names (relaygate.target.path / .name, relaygate.attempt,
# relaygate.attempts, relaygate.timeout_ms); a node is named by `.path` and, when it has a
# name, `.name`, as the attempt span names its target.
FALLBACK_FROM_PATH: Final = "relaygate.fallback.from.path"
FALLBACK_FROM_NAME: Final = "relaygate.fallback.from.name"
FALLBACK_TO_PATH: Final = "relaygate.fallback.to.path"
FALLBACK_TO_NAME: Final = "relaygate.fallback.to.name"
# FALLBACK_REASON ("relaygate.fallback.reason") is defined with the span attributes above.
RETRY_REASON: Final = "relaygate.retry.reason"
RETRY_WAIT_S: Final = "relaygate.retry.wait_s"
RETRY_WAIT_SOURCE: Final = "relaygate.retry.wait_source"
FIRST_CHUNK_ELAPSED_S: Final = "relaygate.first_chunk.elapsed_s"
STREAM_ERROR_DETAIL: Final = "relaygate.stream_error.detail"
EXHAUSTED_REASON: Final = "relaygate.exhausted.reason"
ATTEMPT_BUDGET_SKIPPED_PATH: Final = "relaygate.attempt_budget_spent.skipped.path"
ATTEMPT_BUDGET_SKIPPED_NAME: Final = "relaygate.attempt_budget_spent.skipped.name"
EVENT_STREAM_RECOVERED: Final = "relaygate.stream_recovered"
"""A broken stream was taken over by a later attempt that repeated the delivered text."""
EVENT_RECOVERY_DIVERGED: Final = "relaygate.recovery_diverged"
EVENT_CACHE: Final = "relaygate.cache"
"""A response-cache lookup; ``relaygate.cache.status`` is ``hit`` or ``miss``."""
CACHE_STATUS: Final = "relaygate.cache.status"
EVENT_RATE_LIMITED: Final = "relaygate.rate_limited"
"""A request refused, or a target skipped, for a rate limit or budget."""
RATE_LIMIT_SCOPE: Final = "relaygate.rate_limit.scope"
RATE_LIMIT_KIND: Final = "relaygate.rate_limit.limit"
"""A later attempt could not take over a broken stream: its text differed."""
RECOVERED_CHARS: Final = "relaygate.recovery.delivered_chars"
"""Characters of text the client had received when its stream broke."""

# -- Prometheus metric names (without the _total/_bucket suffixes the client adds) -----------
M_REQUESTS: Final = "relaygate_requests"
M_REQUEST_DURATION: Final = "relaygate_request_duration_seconds"
M_OVERHEAD: Final = "relaygate_gateway_overhead_seconds"
M_ATTEMPTS_PER_REQUEST: Final = "relaygate_attempts_per_request"
M_IN_FLIGHT: Final = "relaygate_requests_in_flight"
M_EXHAUSTED: Final = "relaygate_exhausted_requests"
M_ATTEMPTS: Final = "relaygate_upstream_attempts"
M_UPSTREAM_DURATION: Final = "relaygate_upstream_duration_seconds"
M_TTFT: Final = "relaygate_upstream_time_to_first_chunk_seconds"
M_TOKENS: Final = "relaygate_upstream_tokens"
M_RETRIES: Final = "relaygate_retries"
M_TIMEOUTS: Final = "relaygate_timeouts"
M_FALLBACKS: Final = "relaygate_fallbacks"
M_GENAI_DURATION: Final = "gen_ai_client_operation_duration_seconds"
M_GENAI_TOKENS: Final = "gen_ai_client_token_usage"
M_LABEL_OVERFLOW: Final = "relaygate_label_overflow"
M_TELEMETRY_ERRORS: Final = "relaygate_telemetry_errors"
M_RECOVERY_GIVEN_UP: Final = "relaygate_stream_recovery_given_up"
M_FINAL_ERRORS: Final = "relaygate_final_errors"
M_CONFIG_RELOADS: Final = "relaygate_config_reloads"
M_CONFIG_GENERATION: Final = "relaygate_config_generation"
M_CIRCUIT_STATE: Final = "relaygate_circuit_state"
M_CIRCUIT_TRANSITIONS: Final = "relaygate_circuit_transitions"
M_TRACES_SAMPLED: Final = "relaygate_traces_sampled"
M_TRACE_SPANS: Final = "relaygate_trace_spans"
M_CACHE_LOOKUPS: Final = "relaygate_cache_lookups"
M_RATE_LIMITED: Final = "relaygate_rate_limited"
M_STATE_ERRORS: Final = "relaygate_state_backend_errors"
M_STATE_UP: Final = "relaygate_state_backend_up"

# -- bucket boundaries ------------------------------------------------------------------------
GENAI_DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
"""``gen_ai.client.operation.duration`` advisory boundaries (seconds)."""

GENAI_TOKEN_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
"""``gen_ai.client.token.usage`` advisory boundaries (tokens)."""

OVERHEAD_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
"""Gateway overhead boundaries (seconds): the gateway's own time is sub-millisecond."""

ATTEMPT_COUNT_BUCKETS: Final = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
"""Attempts-per-request boundaries."""
