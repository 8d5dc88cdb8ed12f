"""What a vendor's wire format adds to the mock upstream (Gemini's, Cohere's...).

The mock's request pipeline (auth, body checks, the fault script, latency, hangs, garbage)
is the same for every vendor; a :class:`Wire` supplies what differs: which bodies it
accepts, its error body, and its success answer, plain or streamed. Streams are sent
through the same fault-aware SSE writer as OpenAI's (cuts, stalls, chunk delays, a slow
first token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from relaygate.mock.faults import Fault


@dataclass(frozen=True)
class Exchange:
    """One request a :class:`Wire` answers with a success.

    ``body`` is the parsed JSON body, ``model`` the model asked for (from the body or the
    URL), ``action`` what the URL asked beyond the model (Gemini's ``generateContent``...,
    empty otherwise), ``text`` the answer's text, ``name`` the mock's name, ``fault`` the
    chosen fault (a 2xx ``error_code`` names a refusal to answer as a success, see
    :class:`~relaygate.mock.faults.Fault`), ``sequence`` a number unique in the mock.
    """

    body: dict[str, Any]
    model: str
    action: str
    text: str
    name: str
    fault: Fault
    sequence: int


@dataclass(frozen=True)
class Frames:
    """A streamed answer: SSE events as bytes, the index of the first carrying content
    (where ``first_token_delay_ms`` applies), and a last event sent after them all (the
    end marker, when the format has one)."""

    events: Sequence[bytes]
    first_content: int = 0
    trailer: bytes = b""


class Wire(Protocol):
    """A vendor's wire format in the mock upstream."""

    def validate(self, kind: str, body: dict[str, Any]) -> tuple[str, str] | None:
        """``(param, message)`` when ``body`` is unusable for ``kind``, else ``None``."""
        ...

    def error(self, status: int, message: str, code: str | None) -> dict[str, Any]:
        """The vendor's error body for ``status``."""
        ...

    def prompt_of(self, kind: str, body: dict[str, Any]) -> Any:
        """The part of ``body`` the answer's text may depend on (its messages)."""
        ...

    def streamed(self, kind: str, exchange: Exchange) -> bool:
        """Whether to answer with a stream."""
        ...

    def answer(self, kind: str, exchange: Exchange) -> dict[str, Any]:
        """The plain success body."""
        ...

    def stream(self, kind: str, exchange: Exchange, pieces: list[str]) -> Frames:
        """The streamed success, its text cut into ``pieces``."""
        ...


def words(text: str) -> int:
    """Output tokens the mocks report for ``text``."""
    return len(text.split())
