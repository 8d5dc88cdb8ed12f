"""Matching a recovering stream against the text a client already received.

When a stream breaks after some of it reached the client, the rest of the plan is run again
with the client's original request, and the new stream must first say again exactly what was
already said. Text is compared as accumulated text per *key*, never chunk by chunk (two
attempts cut their text into chunks differently): a key is a choice's ``content``,
``reasoning_content`` or ``refusal`` (chat), its ``text`` (text completions), or a tool call's
``name`` or ``arguments``.

:func:`delivered_of` reads what the client received from the raw SSE bytes it was sent;
:class:`PrefixMatcher` takes the new stream's events one by one, checks them against that
text, and trims them to what is new. Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

Key = tuple[int, str, int]
"""``(choice index, field, tool-call index)``; the tool-call index is -1 for plain text."""

TEXT_FIELDS = ("content", "reasoning_content", "refusal")
"""Text fields of a chat ``delta`` compared as accumulated text."""

NO_TOOL = -1

IDENTITY_FIELDS = ("id", "created", "model", "system_fingerprint")
"""Fields of the original stream's first event every recovered event is given, so the
client sees one coherent stream."""


class Diverged(Exception):
    """The recovering stream said something other than the delivered text."""


def data_lines(block: bytes) -> Iterator[bytes]:
    """The payloads of the complete ``data:`` lines in ``block`` (without ``data:``)."""
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            yield line[5:].strip()


def _index(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def pieces_of(payload: Any) -> Iterator[tuple[Key, str]]:
    """The non-empty text pieces of one chunk object, in the order they appear."""
    if not isinstance(payload, dict):
        return
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        index = _index(choice.get("index"))
        if index is None:
            continue
        text = choice.get("text")
        if isinstance(text, str) and text:
            yield (index, "text", NO_TOOL), text
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        for name in TEXT_FIELDS:
            value = delta.get(name)
            if isinstance(value, str) and value:
                yield (index, name, NO_TOOL), value
        for call in _tool_calls(delta):
            tool = _index(call.get("index"))
            function = call.get("function")
            if tool is None or not isinstance(function, dict):
                continue
            for name in ("name", "arguments"):
                value = function.get(name)
                if isinstance(value, str) and value:
                    yield (index, name, tool), value


def _tool_calls(delta: dict[str, Any]) -> list[dict[str, Any]]:
    calls = delta.get("tool_calls")
    if not isinstance(calls, list):
        return []
    return [c for c in calls if isinstance(c, dict)]


@dataclass
class Delivered:
    """What a client received: text per key, keys per choice in the order they began, the
    tool calls and choices it saw, and the identity fields of the stream's first event."""

    order: dict[int, list[Key]] = field(default_factory=dict)
    tools: set[tuple[int, int]] = field(default_factory=set)
    choices: set[int] = field(default_factory=set)
    identity: dict[str, Any] = field(default_factory=dict)
    _parts: dict[Key, list[str]] = field(default_factory=dict, repr=False)
    _text: dict[Key, str] = field(default_factory=dict, repr=False)
    _joined: bool = field(default=True, repr=False)

    @property
    def chars(self) -> int:
        """Characters of text delivered, over every key."""
        return sum(len(text) for text in self.text.values())

    def add(self, payload: Any) -> None:
        """Account for one chunk object the client received."""
        if not isinstance(payload, dict):
            return
        if not self.identity:
            self.identity = {k: payload[k] for k in IDENTITY_FIELDS if k in payload}
        for choice in payload.get("choices") or ():
            if isinstance(choice, dict) and _index(choice.get("index")) is not None:
                self.choices.add(choice["index"])
                delta = choice.get("delta")
                for call in _tool_calls(delta) if isinstance(delta, dict) else ():
                    tool = _index(call.get("index"))
                    if tool is not None:
                        self.tools.add((choice["index"], tool))
        for key, piece in pieces_of(payload):
            parts = self._parts.get(key)
            if parts is None:
                parts = self._parts[key] = []
                self.order.setdefault(key[0], []).append(key)
            parts.append(piece)
            # Joined when read (:attr:`text`): appending to a string held in a dict would
            # copy it for every piece, quadratic in a long answer.
            self._joined = False

    @property
    def text(self) -> dict[Key, str]:
        """The text delivered per key, joined from its pieces once after the last add."""
        if not self._joined:
            self._text = {key: "".join(parts) for key, parts in self._parts.items()}
            self._joined = True
        return self._text


def continued(delivered: Delivered) -> Delivered:
    """What a stream continuing ``delivered`` (after an assistant prefill) must repeat:
    no text, the same choices, tool calls and identity."""
    return Delivered(
        tools=set(delivered.tools), choices=set(delivered.choices), identity=delivered.identity
    )


def delivered_of(chunks: Iterable[bytes]) -> Delivered | None:
    """What the client got from these raw SSE bytes, or ``None`` when they end in the
    middle of a line (no later event could be appended to what the client holds)."""
    data = b"".join(chunks)
    if data and not data.endswith(b"\n"):
        return None
    delivered = Delivered()
    for line in data_lines(data):
        if line == b"[DONE]":
            continue
        try:
            delivered.add(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return delivered


class PrefixMatcher:
    """Checks a recovering stream's events against :class:`Delivered` and trims them.

    :meth:`feed` takes each chunk object of the new stream in order and returns it with the
    already-delivered text removed (``None`` when nothing new is left in it), or raises
    :class:`Diverged`. Within a choice, keys must be reproduced in the order they began in
    the delivered text; only the last key of a choice may grow past its delivered text, and
    a key the client never saw may begin only once everything delivered for that choice is
    reproduced. ``synced`` becomes true once every delivered key is reproduced in full;
    until then the caller holds the trimmed events back.
    """

    def __init__(self, delivered: Delivered) -> None:
        self.delivered = delivered
        self._got: dict[Key, int] = {}
        self._missing = {k for k, text in delivered.text.items() if text}
        self.synced = not self._missing

    def _complete(self, key: Key) -> bool:
        return self._got.get(key, 0) >= len(self.delivered.text.get(key, ""))

    def _choice_complete(self, choice: int) -> bool:
        return all(self._complete(k) for k in self.delivered.order.get(choice, ()))

    def _take(self, key: Key, piece: str) -> str:
        """Check ``piece`` of ``key`` against the delivered text; return its new part."""
        want = self.delivered.text.get(key, "")
        got = self._got.get(key, 0)
        order = self.delivered.order.get(key[0], [])
        if key in self.delivered.text:
            position = order.index(key)
            if not all(self._complete(k) for k in order[:position]):
                raise Diverged(f"choice {key[0]} went back to text it had left")
        elif not self._choice_complete(key[0]):
            raise Diverged(f"choice {key[0]} began new text before repeating what was sent")
        overlap = max(0, min(len(piece), len(want) - got))
        if piece[:overlap] != want[got : got + overlap]:
            at = got + _common(piece, want[got:])
            raise Diverged(f"choice {key[0]} differs at character {at}")
        self._got[key] = got + len(piece)
        new = piece[overlap:]
        if new and key in self.delivered.text and order[-1] != key:
            raise Diverged(f"choice {key[0]} went on with text the client saw end")
        if key in self._missing and self._complete(key):
            self._missing.discard(key)
            self.synced = not self._missing
        return new

    def feed(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The new part of one event of the recovering stream (see the class docstring)."""
        choices = payload.get("choices")
        if isinstance(choices, list):
            kept = [c for c in (self._choice(c) for c in choices) if c is not None]
            payload["choices"] = kept
            if not kept and payload.get("usage") is None:
                return None
        return payload

    def _choice(self, choice: Any) -> Any:
        if not isinstance(choice, dict):
            return choice
        index = _index(choice.get("index"))
        if index is None:
            return choice
        seen = index in self.delivered.choices
        text = choice.get("text")
        if isinstance(text, str) and text:
            choice["text"] = self._take((index, "text", NO_TOOL), text)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if seen:
                delta.pop("role", None)
            for name in TEXT_FIELDS:
                value = delta.get(name)
                if not isinstance(value, str):
                    continue
                new = self._take((index, name, NO_TOOL), value) if value else ""
                if new:
                    delta[name] = new
                elif seen or value:
                    del delta[name]
            if "tool_calls" in delta:
                calls = [c for c in (self._call(index, c) for c in _tool_calls(delta)) if c]
                if calls:
                    delta["tool_calls"] = calls
                else:
                    del delta["tool_calls"]
        finish = choice.get("finish_reason")
        if finish is not None and not self._choice_complete(index):
            raise Diverged(f"choice {index} finished before repeating what was sent")
        if seen and finish is None and not delta and not choice.get("text"):
            return None
        return choice

    def _call(self, choice: int, call: dict[str, Any]) -> dict[str, Any] | None:
        tool = _index(call.get("index"))
        if tool is None:
            return call
        seen = (choice, tool) in self.delivered.tools
        if seen:
            call.pop("id", None)
            call.pop("type", None)
        function = call.get("function")
        if isinstance(function, dict):
            for name in ("name", "arguments"):
                value = function.get(name)
                if not isinstance(value, str):
                    continue
                new = self._take((choice, name, tool), value) if value else ""
                if new:
                    function[name] = new
                elif seen or value:
                    del function[name]
            if not function:
                del call["function"]
        if seen and set(call) <= {"index"}:
            return None
        return call

    def finished(self) -> None:
        """The recovering stream ended: raise :class:`Diverged` unless it was in sync."""
        if not self.synced:
            raise Diverged("the stream ended before repeating what was sent")


def _common(a: str, b: str) -> int:
    """Length of the common prefix of ``a`` and ``b``."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def rewrite(payload: dict[str, Any], identity: dict[str, Any]) -> bytes:
    """``payload`` as an SSE event, with the original stream's identity fields."""
    for name, value in identity.items():
        if name in payload:
            payload[name] = value
    return b"data: " + orjson.dumps(payload) + b"\n\n"
