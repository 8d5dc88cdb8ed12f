"""A fake OpenAI-compatible upstream LLM provider with scriptable faults.

relaygate's demo, end-to-end tests and benchmarks run this app as a real local
HTTP server, and users run it to rehearse fallback and retry configurations
("what does my gateway do when the primary answers 503, 429, garbage, or
hangs?").

Behaviour per request, in order:

1. The request is recorded (see ``GET /_mock/requests``) and counted.
2. ``MockSettings.api_key`` is enforced (401 on mismatch).
3. The JSON body is parsed and checked (400 on malformed input).
4. A :class:`Fault` is chosen: the ``x-mock-fault`` header if present, else the
   next script step, else the ``error_rate`` dice roll.  Steps 2-3 failing does
   not consume a script step or a dice roll.
5. ``MockSettings.latency_ms + Fault.latency_ms`` elapses, then the fault is
   answered (hang, garbage, error, or a normal/streamed success).

Waiting (latency, hangs) stops early when the client disconnects, so a hanging
request never keeps a server from shutting down once its client gave up.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import hmac
import logging
import math
import random
import struct
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive

__all__ = [
    "Fault",
    "MockSettings",
    "add_mock_arguments",
    "create_mock_app",
    "parse_faults",
    "serve_mock",
    "settings_from_args",
]

_MIN_STATUS = 200
_MAX_STATUS = 599
_HANG_SECONDS = 3600.0
_RECORDED_LIMIT = 100
_EMBEDDING_DIMENSIONS = 8
_MAX_EMBEDDING_DIMENSIONS = 4096
_GARBAGE_BODY = b"<html>upstream exploded</html>"


def _check_non_negative(owner: str, name: str, value: float | None) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}.{name} must be a finite number >= 0, got {value!r}")


def _check_status(owner: str, name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}.{name} must be an integer HTTP status, got {value!r}")
    if not _MIN_STATUS <= value <= _MAX_STATUS:
        raise ValueError(
            f"{owner}.{name} must be between {_MIN_STATUS} and {_MAX_STATUS}, got {value}"
        )


@dataclass(frozen=True)
class Fault:
    """One scripted behaviour for one request.

    A default ``Fault()`` is a plain, immediate success.  Fields combine:

    * ``status``: HTTP status to answer with (200-599).  Statuses >= 400 get an
      OpenAI-shaped JSON error body; other statuses get the normal success body
      (204 and 304 get an empty body).
    * ``latency_ms``: delay before the response headers are sent, added to
      ``MockSettings.latency_ms``.
    * ``retry_after``: if set, the response carries ``retry-after: <seconds>``
      (integer or decimal seconds, as given).
    * ``retry_after_ms``: if set, the response carries ``retry-after-ms: <ms>``.
    * ``garbage``: answer with the non-JSON body ``<html>upstream exploded</html>``
      (content-type ``text/html``) using ``status`` (200 unless set).
    * ``cut_after_chunks``: streaming only (ignored otherwise): close the
      connection abruptly after N SSE chunks, counting the initial role chunk;
      ``data: [DONE]`` is never sent.  0 cuts right after the headers.
    * ``chunk_delay_ms``: streaming only: delay between consecutive SSE events.
    * ``hang``: never answer; wait up to one hour or until the client
      disconnects (use it to exercise timeouts).
    """

    status: int = 200
    latency_ms: float = 0.0
    retry_after: float | None = None
    retry_after_ms: float | None = None
    garbage: bool = False
    cut_after_chunks: int | None = None
    chunk_delay_ms: float = 0.0
    hang: bool = False

    def __post_init__(self) -> None:
        """Reject out-of-range values with ``ValueError``."""
        _check_status("Fault", "status", self.status)
        _check_non_negative("Fault", "latency_ms", self.latency_ms)
        _check_non_negative("Fault", "retry_after", self.retry_after)
        _check_non_negative("Fault", "retry_after_ms", self.retry_after_ms)
        _check_non_negative("Fault", "chunk_delay_ms", self.chunk_delay_ms)
        if self.cut_after_chunks is not None and (
            isinstance(self.cut_after_chunks, bool)
            or not isinstance(self.cut_after_chunks, int)
            or self.cut_after_chunks < 0
        ):
            raise ValueError(
                f"Fault.cut_after_chunks must be an integer >= 0, got {self.cut_after_chunks!r}"
            )


@dataclass(frozen=True)
class MockSettings:
    """Configuration of one mock upstream app.

    * ``name``: identifies the mock; sent as response header ``x-mock-name``,
      used as ``owned_by`` in ``/v1/models`` and in error messages; completion
      text is ``f"Hello from {name}"``.  Responses echo the request's ``model``.
    * ``latency_ms``: base latency applied to every API request (plus
      ``Fault.latency_ms``).
    * ``error_rate``: probability (0..1) that a request with no applicable
      script step answers ``error_status`` instead of succeeding.
    * ``error_status``: status used by ``error_rate`` failures.
    * ``seed``: seed of the RNG behind ``error_rate`` (``None``: unseeded).
      Exactly one draw is made per request that falls back to ``error_rate``.
    * ``script``: faults consumed one per request, in order.
    * ``loop_script``: when the script is exhausted, ``True`` starts it over,
      ``False`` falls back to ``error_rate`` behaviour.
    * ``stream_chunks``: number of content chunks in a streamed answer (>= 1).
    * ``api_key``: if set, requests need ``Authorization: Bearer <api_key>`` or
      ``api-key: <api_key>``, otherwise they get 401.
    """

    name: str = "mock"
    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    seed: int | None = None
    script: tuple[Fault, ...] = ()
    loop_script: bool = False
    stream_chunks: int = 5
    api_key: str | None = None

    def __post_init__(self) -> None:
        """Reject out-of-range values with ``ValueError``."""
        _check_non_negative("MockSettings", "latency_ms", self.latency_ms)
        if not (math.isfinite(self.error_rate) and 0.0 <= self.error_rate <= 1.0):
            raise ValueError(
                f"MockSettings.error_rate must be between 0 and 1, got {self.error_rate!r}"
            )
        _check_status("MockSettings", "error_status", self.error_status)
        if (
            isinstance(self.stream_chunks, bool)
            or not isinstance(self.stream_chunks, int)
            or self.stream_chunks < 1
        ):
            raise ValueError(
                f"MockSettings.stream_chunks must be an integer >= 1, got {self.stream_chunks!r}"
            )
        if not all(isinstance(step, Fault) for step in self.script):
            raise ValueError("MockSettings.script must contain only Fault instances")


# ---------------------------------------------------------------------------
# parse_faults
# ---------------------------------------------------------------------------

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_NONE_WORDS = frozenset({"none", "null"})


def _to_int(text: str) -> int:
    return int(text)


def _to_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _to_optional_float(text: str) -> float | None:
    return None if text.lower() in _NONE_WORDS else _to_float(text)


def _to_optional_int(text: str) -> int | None:
    return None if text.lower() in _NONE_WORDS else int(text)


def _to_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE_WORDS:
        return True
    if lowered in _FALSE_WORDS:
        return False
    raise ValueError("expected true/false")


_FIELD_PARSERS: dict[str, Callable[[str], object]] = {
    "status": _to_int,
    "latency_ms": _to_float,
    "retry_after": _to_optional_float,
    "retry_after_ms": _to_optional_float,
    "garbage": _to_bool,
    "cut_after_chunks": _to_optional_int,
    "chunk_delay_ms": _to_float,
    "hang": _to_bool,
}

_KEYWORDS: dict[str, dict[str, object]] = {
    "timeout": {"hang": True},
    "hang": {"hang": True},
    "garbage": {"garbage": True},
}


def _parse_fault_item(item: str, position: int) -> Fault:
    where = f"fault #{position} ({item!r})"
    head, *options = (part.strip() for part in item.split("@"))
    values: dict[str, object] = {}
    if head.lower() in _KEYWORDS:
        values.update(_KEYWORDS[head.lower()])
    else:
        try:
            values["status"] = int(head)
        except ValueError:
            expected = f"an HTTP status number or one of {sorted(_KEYWORDS)}"
            raise ValueError(f"{where}: expected {expected}, got {head!r}") from None
    seen: set[str] = set()
    for option in options:
        key, sep, raw_value = (text.strip() for text in option.partition("="))
        if not sep or not key or not raw_value:
            raise ValueError(f"{where}: option {option!r} must look like key=value")
        if key not in _FIELD_PARSERS:
            raise ValueError(
                f"{where}: unknown option {key!r}; expected one of {sorted(_FIELD_PARSERS)}"
            )
        if key in seen:
            raise ValueError(f"{where}: option {key!r} given twice")
        seen.add(key)
        try:
            values[key] = _FIELD_PARSERS[key](raw_value)
        except ValueError as exc:
            raise ValueError(f"{where}: bad value {raw_value!r} for {key!r}: {exc}") from None
    try:
        return Fault(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def parse_faults(spec: str) -> tuple[Fault, ...]:
    """Parse a compact fault script into a tuple of :class:`Fault`.

    Examples: ``"503,503,200"``, ``"429@retry_after=1,200"``, ``"timeout,200"``,
    ``"garbage"``, ``"200@latency_ms=50"``, ``"200@cut_after_chunks=2"``, ``"hang"``.

    Items are separated by commas.  Each item is an HTTP status number (200-599)
    or a keyword (``timeout``/``hang`` -> ``hang=True``, ``garbage`` ->
    ``garbage=True``; keywords keep status 200), optionally followed by
    ``@key=value`` options joined with ``@``.  Keys are :class:`Fault` field names;
    booleans accept true/false/1/0/yes/no/on/off, optional fields accept
    none/null.  Whitespace around items, keys and values is ignored.  A blank
    spec yields ``()``.  Raises ``ValueError`` with a message naming the bad item.
    """
    if not isinstance(spec, str):
        raise ValueError(f"fault spec must be a string, got {type(spec).__name__}")
    if not spec.strip():
        return ()
    faults: list[Fault] = []
    for position, raw_item in enumerate(spec.split(","), start=1):
        item = raw_item.strip()
        if not item:
            raise ValueError(f"fault #{position} is empty in spec {spec!r}")
        faults.append(_parse_fault_item(item, position))
    return tuple(faults)


# ---------------------------------------------------------------------------
# Response helpers
# ---------------------------------------------------------------------------

_ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "bad_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    408: ("timeout_error", "request_timeout"),
    409: ("conflict_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
    529: ("overloaded_error", "overloaded"),
}


def _error_kind(status: int) -> tuple[str, str]:
    known = _ERROR_KINDS.get(status)
    if known is not None:
        return known
    return ("server_error" if status >= 500 else "invalid_request_error", f"http_{status}")


def _format_seconds(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _json_response(data: object, status: int, headers: dict[str, str]) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )


def _error_response(
    status: int,
    message: str,
    headers: dict[str, str],
    *,
    param: str | None = None,
    code: str | None = None,
) -> Response:
    error_type, default_code = _error_kind(status)
    body = {
        "error": {
            "message": message,
            "type": error_type,
            "param": param,
            "code": code or default_code,
        }
    }
    return _json_response(body, status, headers)


def _text_length(content: object) -> int:
    """Characters of text in a message ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"])
        return total
    return 0


def _prompt_tokens(characters: int) -> int:
    return characters // 4 + 1


def _split_text(text: str, pieces: int) -> list[str]:
    """Split ``text`` into ``pieces`` consecutive parts that join back to ``text``."""
    size = len(text)
    return [text[i * size // pieces : (i + 1) * size // pieces] for i in range(pieces)]


def _embedding_vector(key: bytes, dimensions: int) -> list[float]:
    """A deterministic vector in [-1, 1) whose values are exact float32 numbers."""
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(block.to_bytes(4, "little") + key).digest()
        values.extend(k / 32768.0 for k in struct.unpack("<16h", digest))
        block += 1
    return values[:dimensions]


def _is_token_list(value: object) -> TypeGuard[list[int]]:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def _embedding_inputs(raw: object) -> list[tuple[bytes, str | None, int]] | None:
    """Normalise an embeddings ``input`` into ``(hash key, text, token ids)`` triples.

    Accepts a string, a list of strings, a list of token ids or a list of token
    id lists (``text`` is ``None`` for token ids); returns ``None`` otherwise.
    """
    if isinstance(raw, str):
        return [(raw.encode(), raw, 0)]
    if _is_token_list(raw):
        return [(orjson.dumps(raw), None, len(raw))]
    if not isinstance(raw, list) or not raw:
        return None
    items: list[tuple[bytes, str | None, int]] = []
    for entry in raw:
        if isinstance(entry, str):
            items.append((entry.encode(), entry, 0))
        elif _is_token_list(entry):
            items.append((orjson.dumps(entry), None, len(entry)))
        else:
            return None
    return items


def _embedding_tokens(inputs: list[tuple[bytes, str | None, int]]) -> int:
    """Total characters of text inputs // 4 + 1, plus the count of token-id inputs."""
    texts = [text for _, text, _ in inputs if text is not None]
    text_tokens = _prompt_tokens(sum(len(text) for text in texts)) if texts else 0
    return text_tokens + sum(count for _, _, count in inputs)


class _StreamCut(Exception):
    """Raised inside a streaming body to make the server drop the connection."""


class _QuietStreamCut(logging.Filter):
    """Drops the server's error log records caused by a deliberate stream cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        exc: BaseException | None = exc_info[1] if exc_info else None
        while exc is not None:
            if isinstance(exc, _StreamCut):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _QuietStreamCut) for existing in logger.filters):
        logger.addFilter(_QuietStreamCut())


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _sleep_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; return ``True`` early if the client disconnects first.

    Must only be called after the request body has been fully read.
    """
    if seconds <= 0:
        return False
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(_wait_for_disconnect(request.receive))
    try:
        done, _ = await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if watcher in done and watcher.exception() is not None:
            # The disconnect cannot be observed on this server; just sleep.
            await sleeper
            return False
    finally:
        sleeper.cancel()
        watcher.cancel()
    return watcher in done


# ---------------------------------------------------------------------------
# Per-app state
# ---------------------------------------------------------------------------


class _MockState:
    """Script position, counters and recorded requests of one app instance.

    Mutations happen synchronously between awaits, so concurrent asyncio
    requests on one event loop never see a half-updated state.
    """

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.script: tuple[Fault, ...] = settings.script
        self.loop_script = settings.loop_script
        self.position = 0
        self.rng = random.Random(settings.seed)
        self.requests = 0
        self.by_status: Counter[str] = Counter()
        self.recorded: deque[dict[str, Any]] = deque(maxlen=_RECORDED_LIMIT)
        self.sequence = 0

    def reset(self) -> None:
        self.position = 0
        self.rng = random.Random(self.settings.seed)
        self.requests = 0
        self.by_status.clear()
        self.recorded.clear()

    def set_script(self, script: tuple[Fault, ...], loop: bool) -> None:
        self.script = script
        self.loop_script = loop
        self.position = 0

    def next_fault(self) -> Fault:
        if self.position < len(self.script):
            fault = self.script[self.position]
            self.position += 1
            return fault
        if self.loop_script and self.script:
            fault = self.script[self.position % len(self.script)]
            self.position += 1
            return fault
        if self.rng.random() < self.settings.error_rate:
            return Fault(status=self.settings.error_status)
        return Fault()

    def next_id(self, prefix: str) -> str:
        self.sequence += 1
        return f"{prefix}-mock{self.sequence:06d}"

    def record(self, request: Request, body: object) -> None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in request.headers.raw:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.requests += 1
        self.recorded.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": headers,
                "body": body,
            }
        )

    def count(self, key: str) -> None:
        self.by_status[key] += 1


_NOT_JSON = object()


def _parse_body(raw: bytes) -> object:
    """Parsed JSON body, ``None`` for an empty body, ``_NOT_JSON`` if malformed."""
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_JSON


# ---------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------

_DEFAULT_SETTINGS = MockSettings()


class _MockApp:
    """Route handlers bound to one :class:`_MockState`."""

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.state = _MockState(settings)
        self.name_header = {"x-mock-name": settings.name}
        self.answer = f"Hello from {settings.name}"
        self.answer_tokens = len(self.answer.split())

    # -- shared request pipeline -------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        expected = self.settings.api_key
        if expected is None:
            return True
        candidates = [request.headers.get("api-key", "")]
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            candidates.append(token.strip())
        return any(hmac.compare_digest(c.encode(), expected.encode()) for c in candidates if c)

    def _fail(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> Response:
        self.state.count(str(status))
        return _error_response(status, message, dict(self.name_header), param=param, code=code)

    async def _handle(self, request: Request, kind: str) -> Response:
        name = self.settings.name
        raw = await request.body()
        body = _parse_body(raw)
        self.state.record(request, None if body is _NOT_JSON else body)
        base_seconds = self.settings.latency_ms / 1000.0

        early: Response | None = None
        fault: Fault | None = None
        payload: dict[str, Any] = {}
        if not self._authorized(request):
            early = self._fail(401, f"mock {name}: invalid or missing api key")
        elif body is _NOT_JSON:
            early = self._fail(
                400, f"mock {name}: request body is not valid JSON", code="invalid_json"
            )
        elif body is not None and not isinstance(body, dict):
            early = self._fail(400, f"mock {name}: request body must be a JSON object")
        else:
            payload = body or {}
            problem = self._validate(kind, payload)
            if problem is not None:
                early = self._fail(400, f"mock {name}: {problem[1]}", param=problem[0])
            else:
                header_spec = request.headers.get("x-mock-fault")
                if header_spec is not None:
                    try:
                        fault = parse_faults(header_spec)[0]
                    except (ValueError, IndexError) as exc:
                        detail = str(exc) if isinstance(exc, ValueError) else "empty spec"
                        early = self._fail(400, f"mock {name}: bad x-mock-fault header: {detail}")
                else:
                    fault = self.state.next_fault()

        if early is not None or fault is None:
            await _sleep_unless_disconnected(request, base_seconds)
            return early or self._fail(500, f"mock {name}: no fault chosen")

        self.state.count("hang" if fault.hang else str(fault.status))
        headers = dict(self.name_header)
        if fault.retry_after is not None:
            headers["retry-after"] = _format_seconds(fault.retry_after)
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = _format_seconds(fault.retry_after_ms)

        if await _sleep_unless_disconnected(request, base_seconds + fault.latency_ms / 1000.0):
            return Response(status_code=499, headers=headers)
        if fault.hang:
            await _sleep_unless_disconnected(request, _HANG_SECONDS)
            return _error_response(504, f"mock {name}: simulated hang ended", headers)
        if fault.garbage:
            return Response(
                _GARBAGE_BODY, status_code=fault.status, media_type="text/html", headers=headers
            )
        if fault.status >= 400:
            return _error_response(fault.status, f"mock {name}: simulated {fault.status}", headers)
        if fault.status in (204, 304):
            return Response(status_code=fault.status, headers=headers)
        return self._success(kind, request, payload, fault, headers)

    def _validate(self, kind: str, body: dict[str, Any]) -> tuple[str, str] | None:
        """``(param, message)`` describing why ``body`` is unusable, or ``None``."""
        if kind == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                return ("messages", "'messages' must be a list of message objects")
        elif kind == "embeddings":
            if _embedding_inputs(body.get("input")) is None:
                return ("input", "'input' must be a string, a list of strings or token ids")
            dimensions = body.get("dimensions", _EMBEDDING_DIMENSIONS)
            if (
                isinstance(dimensions, bool)
                or not isinstance(dimensions, int)
                or not 1 <= dimensions <= _MAX_EMBEDDING_DIMENSIONS
            ):
                return (
                    "dimensions",
                    f"'dimensions' must be an integer in 1..{_MAX_EMBEDDING_DIMENSIONS}",
                )
            encoding = body.get("encoding_format", "float")
            if encoding not in ("float", "base64"):
                return ("encoding_format", "'encoding_format' must be 'float' or 'base64'")
        return None

    # -- success bodies ----------------------------------------------------------

    def _model(self, request: Request, body: dict[str, Any]) -> str:
        model = body.get("model")
        if isinstance(model, str) and model:
            return model
        deployment = request.path_params.get("deployment")
        if isinstance(deployment, str) and deployment:
            return deployment
        return self.settings.name

    def _usage(self, prompt_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": self.answer_tokens,
            "total_tokens": prompt_tokens + self.answer_tokens,
        }

    def _success(
        self,
        kind: str,
        request: Request,
        body: dict[str, Any],
        fault: Fault,
        headers: dict[str, str],
    ) -> Response:
        model = self._model(request, body)
        if kind == "embeddings":
            return self._embeddings(model, body, fault.status, headers)
        if kind == "models":
            data = [
                {
                    "id": self.settings.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": self.settings.name,
                }
            ]
            return _json_response({"object": "list", "data": data}, fault.status, headers)

        created = int(time.time())
        if kind == "chat":
            messages: list[dict[str, Any]] = body["messages"]
            prompt_tokens = _prompt_tokens(sum(_text_length(m.get("content")) for m in messages))
            completion_id = self.state.next_id("chatcmpl")
        else:
            prompt = body.get("prompt", "")
            if _is_token_list(prompt):
                prompt_tokens = len(prompt)
            else:
                prompts = prompt if isinstance(prompt, list) else [prompt]
                prompt_tokens = _prompt_tokens(sum(_text_length(p) for p in prompts))
            completion_id = self.state.next_id("cmpl")
        usage = self._usage(prompt_tokens)

        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            chunks = (
                self._chat_chunks(completion_id, created, model, usage, include_usage)
                if kind == "chat"
                else self._text_chunks(completion_id, created, model, usage, include_usage)
            )
            stream_headers = {**headers, "cache-control": "no-cache"}
            return StreamingResponse(
                _sse(chunks, fault),
                status_code=fault.status,
                media_type="text/event-stream",
                headers=stream_headers,
            )

        choice: dict[str, Any]
        if kind == "chat":
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": self.answer},
                "logprobs": None,
                "finish_reason": "stop",
            }
            obj = "chat.completion"
        else:
            choice = {"text": self.answer, "index": 0, "logprobs": None, "finish_reason": "stop"}
            obj = "text_completion"
        payload = {
            "id": completion_id,
            "object": obj,
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage,
        }
        return _json_response(payload, fault.status, headers)

    def _chat_chunks(
        self,
        completion_id: str,
        created: int,
        model: str,
        usage: dict[str, int],
        include_usage: bool,
    ) -> list[dict[str, Any]]:
        def chunk(delta: dict[str, str], finish_reason: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            out: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }
            if include_usage:
                out["usage"] = None
            return out

        chunks = [chunk({"role": "assistant", "content": ""}, None)]
        chunks.extend(
            chunk({"content": piece}, None)
            for piece in _split_text(self.answer, self.settings.stream_chunks)
        )
        chunks.append(chunk({}, "stop"))
        if include_usage:
            chunks.append(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        return chunks

    def _text_chunks(
        self,
        completion_id: str,
        created: int,
        model: str,
        usage: dict[str, int],
        include_usage: bool,
    ) -> list[dict[str, Any]]:
        def chunk(text: str, finish_reason: str | None) -> dict[str, Any]:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            out: dict[str, Any] = {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [choice],
            }
            if include_usage:
                out["usage"] = None
            return out

        chunks = [
            chunk(piece, None) for piece in _split_text(self.answer, self.settings.stream_chunks)
        ]
        chunks.append(chunk("", "stop"))
        if include_usage:
            chunks.append(
                {
                    "id": completion_id,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        return chunks

    def _embeddings(
        self, model: str, body: dict[str, Any], status: int, headers: dict[str, str]
    ) -> Response:
        inputs = _embedding_inputs(body.get("input")) or []
        dimensions: int = body.get("dimensions", _EMBEDDING_DIMENSIONS)
        as_base64 = body.get("encoding_format", "float") == "base64"
        data: list[dict[str, Any]] = []
        for index, (key, _, _) in enumerate(inputs):
            vector = _embedding_vector(key, dimensions)
            embedding: object = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = _embedding_tokens(inputs)
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return _json_response(payload, status, headers)

    # -- route endpoints -----------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        return await self._handle(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._handle(request, "completions")

    async def embeddings(self, request: Request) -> Response:
        return await self._handle(request, "embeddings")

    async def models(self, request: Request) -> Response:
        return await self._handle(request, "models")

    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if not request.url.path.startswith("/_mock/"):
            body = _parse_body(await request.body())
            self.state.record(request, None if body is _NOT_JSON else body)
            self.state.count(str(status))
        message = f"mock {self.settings.name}: no route for {request.method} {request.url.path}"
        return _error_response(status, message, dict(self.name_header))

    # -- control endpoints -------------------------------------------------------

    async def stats(self, request: Request) -> Response:
        by_status = {key: self.state.by_status[key] for key in sorted(self.state.by_status)}
        return _json_response(
            {"requests": self.state.requests, "by_status": by_status}, 200, self.name_header
        )

    async def set_script(self, request: Request) -> Response:
        name = self.settings.name
        body = _parse_body(await request.body())
        if not isinstance(body, dict):
            return _error_response(
                400, f"mock {name}: expected a JSON object", dict(self.name_header)
            )
        spec = body.get("script", "")
        loop = body.get("loop", False)
        if not isinstance(spec, str) or not isinstance(loop, bool):
            message = f"mock {name}: 'script' must be a string and 'loop' a boolean"
            return _error_response(400, message, dict(self.name_header))
        try:
            script = parse_faults(spec)
        except ValueError as exc:
            return _error_response(
                400, f"mock {name}: {exc}", dict(self.name_header), param="script"
            )
        self.state.set_script(script, loop)
        return _json_response({"script_length": len(script), "loop": loop}, 200, self.name_header)

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return _json_response({"reset": True}, 200, self.name_header)

    async def requests(self, request: Request) -> Response:
        return _json_response(list(self.state.recorded), 200, self.name_header)

    def routes(self) -> list[Route]:
        routes: list[Route] = []
        for prefix in ("/v1", "", "/openai/deployments/{deployment}"):
            routes.append(Route(f"{prefix}/chat/completions", self.chat, methods=["POST"]))
            routes.append(Route(f"{prefix}/completions", self.completions, methods=["POST"]))
            routes.append(Route(f"{prefix}/embeddings", self.embeddings, methods=["POST"]))
        for path in ("/v1/models", "/models", "/openai/models"):
            routes.append(Route(path, self.models, methods=["GET"]))
        routes.append(Route("/_mock/stats", self.stats, methods=["GET"]))
        routes.append(Route("/_mock/script", self.set_script, methods=["POST"]))
        routes.append(Route("/_mock/reset", self.reset, methods=["POST"]))
        routes.append(Route("/_mock/requests", self.requests, methods=["GET"]))
        return routes


async def _sse(chunks: list[dict[str, Any]], fault: Fault) -> AsyncIterator[bytes]:
    """Yield SSE events, honouring ``chunk_delay_ms`` and ``cut_after_chunks``."""
    delay = fault.chunk_delay_ms / 1000.0
    cut = fault.cut_after_chunks
    for index, chunk in enumerate(chunks):
        if cut is not None and index >= cut:
            raise _StreamCut(f"mock stream cut after {cut} chunks")
        if index and delay > 0:
            await asyncio.sleep(delay)
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    if cut is not None:
        raise _StreamCut(f"mock stream cut after {cut} chunks")
    if delay > 0:
        await asyncio.sleep(delay)
    yield b"data: [DONE]\n\n"


def create_mock_app(settings: MockSettings = _DEFAULT_SETTINGS) -> ASGIApp:
    """Build the mock upstream as a Starlette app (plain routes, no BaseHTTPMiddleware).

    Serves ``POST /v1/chat/completions``, ``POST /v1/completions``,
    ``POST /v1/embeddings`` and ``GET /v1/models``, the same without the ``/v1``
    prefix, and Azure-style ``/openai/deployments/{deployment}/...`` (where a
    missing body ``model`` defaults to the deployment name).  Control endpoints:
    ``GET /_mock/stats``, ``POST /_mock/script`` (``{"script": spec, "loop": bool}``),
    ``POST /_mock/reset`` (counters, script position, recorded requests, RNG
    reseeded) and ``GET /_mock/requests`` (JSON list, oldest first, of the last
    100 API requests, each with method, path, raw query string, lower-cased
    headers and parsed JSON body or null).

    Each call returns an independent app with its own script position, counters
    and recordings.  Streams cut by ``Fault.cut_after_chunks`` abort by raising
    inside the response body; the resulting uvicorn error log line is filtered.
    """
    _install_log_filter()
    mock = _MockApp(settings)
    return Starlette(routes=mock.routes(), exception_handlers={HTTPException: mock.not_found})


# ---------------------------------------------------------------------------
# CLI helpers
# ---------------------------------------------------------------------------


def _script_arg(text: str) -> tuple[Fault, ...]:
    try:
        return parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative_float_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _probability_arg(text: str) -> float:
    value = _non_negative_float_arg(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {text!r}")
    return value


def _status_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an HTTP status, got {text!r}") from None
    if not _MIN_STATUS <= value <= _MAX_STATUS:
        raise argparse.ArgumentTypeError(
            f"expected an HTTP status in {_MIN_STATUS}..{_MAX_STATUS}, got {text!r}"
        )
    return value


def _positive_int_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def add_mock_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mock upstream options to ``parser``.

    Options (dest in brackets): ``--host`` [host, default 127.0.0.1], ``--port``
    [port, default 9001], ``--name`` [name], ``--latency-ms`` [latency_ms],
    ``--error-rate`` [error_rate], ``--error-status`` [error_status], ``--seed``
    [seed], ``--script`` [script, a :func:`parse_faults` spec, parsed at argument
    parsing time], ``--loop`` [loop], ``--stream-chunks`` [stream_chunks],
    ``--api-key`` [api_key].  Defaults match :class:`MockSettings`.
    """
    defaults = _DEFAULT_SETTINGS
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=9001, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--name", default=defaults.name, help="mock name in responses (default: %(default)s)"
    )
    parser.add_argument(
        "--latency-ms",
        type=_non_negative_float_arg,
        default=defaults.latency_ms,
        help="base latency per request",
    )
    parser.add_argument(
        "--error-rate",
        type=_probability_arg,
        default=defaults.error_rate,
        help="probability (0..1) of an error",
    )
    parser.add_argument(
        "--error-status",
        type=_status_arg,
        default=defaults.error_status,
        help="status used by --error-rate",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="RNG seed for reproducible --error-rate"
    )
    parser.add_argument(
        "--script",
        type=_script_arg,
        default=None,
        help='fault script, e.g. "503,429@retry_after=1,200"',
    )
    parser.add_argument("--loop", action="store_true", help="restart the script when exhausted")
    parser.add_argument(
        "--stream-chunks",
        type=_positive_int_arg,
        default=defaults.stream_chunks,
        help="content chunks per stream",
    )
    parser.add_argument(
        "--api-key", default=None, help="require this API key (Bearer or api-key header)"
    )


def settings_from_args(ns: argparse.Namespace) -> MockSettings:
    """Build :class:`MockSettings` from a namespace filled by :func:`add_mock_arguments`.

    ``ns.script`` may be a tuple of faults, a spec string or ``None``; missing
    attributes take the :class:`MockSettings` defaults.  Raises ``ValueError``
    on invalid values.
    """
    defaults = _DEFAULT_SETTINGS
    script = getattr(ns, "script", None)
    if script is None:
        faults: tuple[Fault, ...] = ()
    elif isinstance(script, str):
        faults = parse_faults(script)
    else:
        faults = tuple(script)
    return dataclasses.replace(
        defaults,
        name=getattr(ns, "name", defaults.name),
        latency_ms=getattr(ns, "latency_ms", defaults.latency_ms),
        error_rate=getattr(ns, "error_rate", defaults.error_rate),
        error_status=getattr(ns, "error_status", defaults.error_status),
        seed=getattr(ns, "seed", defaults.seed),
        script=faults,
        loop_script=bool(getattr(ns, "loop", defaults.loop_script)),
        stream_chunks=getattr(ns, "stream_chunks", defaults.stream_chunks),
        api_key=getattr(ns, "api_key", defaults.api_key),
    )


def serve_mock(host: str, port: int, settings: MockSettings) -> None:
    """Run the mock upstream with uvicorn on ``host:port`` until interrupted (blocking)."""
    import uvicorn

    uvicorn.run(
        create_mock_app(settings), host=host, port=port, log_level="warning", lifespan="off"
    )


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description="relaygate mock upstream LLM provider")
    add_mock_arguments(_parser)
    _ns = _parser.parse_args()
    serve_mock(_ns.host, _ns.port, settings_from_args(_ns))
