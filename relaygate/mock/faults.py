"""The fault model of the mock upstream: :class:`Fault`, :class:`MockSettings` and the
fault-script syntax :func:`parse_faults`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

_MIN_STATUS = 200
_MAX_STATUS = 599


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
    * ``hang``: never answer; wait up to ``MockSettings.hang_s`` (one hour) or until
      the client disconnects (use it to exercise timeouts).
    * ``first_token_delay_ms``: streaming only: the headers and the role-only opening
      chunk go out at once, the first chunk carrying content this much later (a model
      slow to start its answer; exercises ``first_token_timeout``).
    * ``stall_after_chunks``: streaming only: after N SSE chunks (counting the opening
      chunk) send nothing more and keep the connection open, until the client goes away
      or ``MockSettings.hang_s`` has passed (then the connection is cut); exercises
      ``stream_idle_timeout``.  0 stalls right after the headers.
    * ``error_code``: the ``code`` of the error body of a status >= 400 (instead of the
      status's usual one), e.g. ``content_filter``.  On a 2xx it names a refusal that a
      vendor format answers as a success (Gemini's ``prompt_blocked`` and
      ``finish_safety``, see :mod:`relaygate.mock.google`); OpenAI's format ignores it.
    * ``for_ms``: this script step answers every request for this many milliseconds
      instead of one request, then the script moves on; windows of consecutive timed
      steps follow each other in time (``503@for_ms=60000,200``: a 60-second outage;
      ``503@for_ms=2000,200@for_ms=2000`` with ``loop``: a primary that flaps every 2 s).
      The window of a step starts with the first request it answers, or where the
      previous timed step's window ended.
    """

    status: int = 200
    latency_ms: float = 0.0
    retry_after: float | None = None
    retry_after_ms: float | None = None
    garbage: bool = False
    cut_after_chunks: int | None = None
    chunk_delay_ms: float = 0.0
    hang: bool = False
    first_token_delay_ms: float = 0.0
    stall_after_chunks: int | None = None
    error_code: str | None = None
    for_ms: float | None = None

    def __post_init__(self) -> None:
        """Reject out-of-range values with ``ValueError``."""
        _check_status("Fault", "status", self.status)
        _check_non_negative("Fault", "latency_ms", self.latency_ms)
        _check_non_negative("Fault", "retry_after", self.retry_after)
        _check_non_negative("Fault", "retry_after_ms", self.retry_after_ms)
        _check_non_negative("Fault", "chunk_delay_ms", self.chunk_delay_ms)
        _check_non_negative("Fault", "first_token_delay_ms", self.first_token_delay_ms)
        _check_chunk_count("cut_after_chunks", self.cut_after_chunks)
        _check_chunk_count("stall_after_chunks", self.stall_after_chunks)
        if self.for_ms is not None and (not math.isfinite(self.for_ms) or self.for_ms <= 0):
            raise ValueError(f"Fault.for_ms must be a finite number > 0, got {self.for_ms!r}")
        if self.error_code is not None and not _ERROR_CODE.fullmatch(self.error_code):
            raise ValueError(
                "Fault.error_code must be 1-64 letters, digits, '_', '-' or '.', "
                f"got {self.error_code!r}"
            )


_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _check_chunk_count(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"Fault.{name} must be an integer >= 0, got {value!r}")


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
    * ``text``: what the answers say (unless ``answer`` is set).  ``"greeting"``:
      ``f"Hello from {name}"``.
      ``"request"``: :data:`REQUEST_TEXT_WORDS` words that are a deterministic function of
      the request's prompt alone (its ``messages`` or ``prompt``; not the model, not the
      mock's name), so every simulator answers one request with the same text, word for
      word, and a stream recovered on another upstream can be compared with the whole
      answer.
    * ``hang_s``: the longest a ``hang`` or a stall (``stall_after_chunks``) lasts.
    * ``answer``: the completion text, when set (instead of ``Hello from {name}``): mocks
      with the same ``answer`` answer the same request with the same text, word for word,
      however each cuts it into chunks.
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
    text: Literal["greeting", "request"] = "greeting"
    hang_s: float = 3600.0
    answer: str | None = None

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
        if self.text not in TEXT_MODES:
            raise ValueError(f"MockSettings.text must be one of {TEXT_MODES}, got {self.text!r}")
        _check_non_negative("MockSettings", "hang_s", self.hang_s)


TEXT_MODES: tuple[str, ...] = ("greeting", "request")
"""The values of ``MockSettings.text``."""

REQUEST_TEXT_WORDS = 24
"""Words of an answer with ``MockSettings.text == "request"``."""


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
    "first_token_delay_ms": _to_float,
    "stall_after_chunks": _to_optional_int,
    "error_code": str,
    "for_ms": _to_optional_float,
}

_KEYWORDS: dict[str, dict[str, object]] = {
    "timeout": {"hang": True},
    "hang": {"hang": True},
    "garbage": {"garbage": True},
    "content_filter": {"status": 400, "error_code": "content_filter"},
    "content_policy_violation": {"status": 400, "error_code": "content_policy_violation"},
    "stall": {"stall_after_chunks": 2},
    "safety_block": {"status": 200, "error_code": "prompt_blocked"},
    "safety_finish": {"status": 200, "error_code": "finish_safety"},
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
    ``"garbage"``, ``"200@latency_ms=50"``, ``"200@cut_after_chunks=2"``, ``"hang"``,
    ``"200@first_token_delay_ms=3000"``, ``"stall"``, ``"200@stall_after_chunks=3"``,
    ``"content_filter"``, ``"503@for_ms=60000,200"``, ``"safety_block"``.

    Items are separated by commas.  Each item is an HTTP status number (200-599)
    or a keyword (``timeout``/``hang`` -> ``hang=True``, ``garbage`` ->
    ``garbage=True``, ``stall`` -> ``stall_after_chunks=2``: these keep status 200;
    ``content_filter`` and ``content_policy_violation`` -> status 400 with that error
    ``code``, the refusal of a provider's safety system; ``safety_block`` and
    ``safety_finish`` -> status 200 with ``error_code`` ``prompt_blocked`` or
    ``finish_safety``, Gemini's refusals answered as a 200), optionally followed by
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
