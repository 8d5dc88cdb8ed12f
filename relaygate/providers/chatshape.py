"""OpenAI chat shapes shared by the translators: reading a request, writing answers and chunks.

Pure functions and small value objects; nothing here knows a vendor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from relaygate.config.model import Target
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest
from relaygate.providers.translation import DONE_EVENT, data_event

Clock = Callable[[], float]
"""Seconds since the epoch (``time.time``), injected where answers carry ``created``."""


def merged_body(request: GatewayRequest, target: Target) -> dict[str, Any]:
    """The client's body with the target's ``override_params`` merged over it."""
    if not target.override_params:
        return request.body
    return {**request.body, **target.override_params}


def unsupported(provider: str, param: str, why: str) -> GatewayError:
    """The 400 for a request a provider cannot serve (not final: fallback moves on)."""
    return GatewayError(
        400, f"provider '{provider}' {why}", code="unsupported_parameter", param=param
    )


def required_model(provider: str, body: Mapping[str, Any]) -> str:
    """The request's ``model`` (after overrides); a 400 naming the provider when absent."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(
            400,
            f"provider '{provider}' needs a model: set 'model' in the request or the "
            "target's override_params",
            code="missing_model",
            param="model",
        )
    return model


def any_text_of(content: Any) -> str:
    """The text of ``content``: a string, or the string ``text`` of every part of a list
    joined, whatever the part's ``type`` (a Responses ``output_text`` part included)."""
    return _parts_text(content, None)


def text_of(content: Any) -> str:
    """The text of a message ``content``: a string, or the ``text`` parts of a list joined."""
    return _parts_text(content, "text")


def _parts_text(content: Any, part_type: str | None) -> str:
    """``content`` if a string; else the string ``text`` of each dict part of a list (of
    ``type`` ``part_type`` only, unless that is ``None``) joined; else ``""``."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        text
        for part in content
        if isinstance(part, dict)
        and (part_type is None or part.get("type") == part_type)
        and isinstance(text := part.get("text"), str)
    )


def stop_list(stop: Any) -> list[str] | None:
    """OpenAI's ``stop`` (a string or a list of strings) as a list; ``None`` when unset."""
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    return None


def wants_usage_chunk(body: Mapping[str, Any]) -> bool:
    """Whether the client asked for OpenAI's separate usage chunk (``stream_options``)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def usage_object(
    prompt: int, completion: int, cached: int | None = None, reasoning: int | None = None
) -> dict[str, Any]:
    """An OpenAI ``usage`` object, with token details when the provider reported them."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def completion(
    id: str, model: str, created: int, choices: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object."""
    out: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = usage
    return out


def message_choice(
    index: int, text: str | None, tool_calls: list[dict[str, Any]], finish_reason: str | None
) -> dict[str, Any]:
    """One ``chat.completion`` choice: the assistant's text and tool calls."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}


def tool_call(id: str, name: str, arguments: str) -> dict[str, Any]:
    """One OpenAI ``tool_calls`` entry."""
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


@dataclass(slots=True)
class ChunkWriter:
    """Writes one stream's OpenAI ``chat.completion.chunk`` events, all with one id, model
    and ``created``; remembers which choices have had their opening ``role``.

    :meth:`close` writes the finish chunks held back by :meth:`finish`, the usage (in its
    own chunk when the client asked for it with ``stream_options.include_usage``, else on
    the last finish chunk, so telemetry reads it and a client indexing ``choices[0]`` never
    meets an empty list) and ``[DONE]``.
    """

    id: str
    model: str
    created: int
    usage_chunk: bool
    _opened: set[int] = field(default_factory=set)
    _finishes: dict[int, str] = field(default_factory=dict)
    closed: bool = False
    """Whether :meth:`close` has written the closing events."""

    def chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        """One chunk event with ``choices`` (and ``usage`` when given)."""
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            payload["usage"] = usage
        return data_event(payload)

    def delta(self, index: int, delta: dict[str, Any]) -> bytes:
        """A chunk carrying ``delta`` for choice ``index`` (its first one names the role)."""
        if index not in self._opened:
            self._opened.add(index)
            delta = {"role": "assistant", **delta}
        return self.chunk(
            [{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]
        )

    def finish(self, index: int, reason: str) -> None:
        """Hold choice ``index``'s finish reason for :meth:`close` (the first one counts)."""
        self._finishes.setdefault(index, reason)

    @property
    def finished(self) -> bool:
        """Whether some choice has finished."""
        return bool(self._finishes)

    def close(self, usage: dict[str, Any] | None) -> list[bytes]:
        """The closing events: finish chunks, usage, ``[DONE]``."""
        self.closed = True
        out: list[bytes] = []
        indexes = sorted(self._finishes)
        for position, index in enumerate(indexes):
            last = position == len(indexes) - 1
            choice = {
                "index": index,
                "delta": {} if index in self._opened else {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": self._finishes[index],
            }
            attach = usage if last and not self.usage_chunk else None
            out.append(self.chunk([choice], attach))
        if usage is not None and (self.usage_chunk or not indexes):
            out.append(self.chunk([], usage))
        out.append(DONE_EVENT)
        return out


def now_seconds(clock: Clock = time.time) -> int:
    """``created`` for an answer: whole seconds of ``clock``."""
    return int(clock())
