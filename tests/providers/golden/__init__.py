"""Golden fixtures of the Gemini and Cohere translators.

Each JSON file names the API reference page its vendor side was written from (``source``).
The vendor sides (requests, answers, stream events, errors) follow those pages; the OpenAI
sides are what relaygate makes of them, reviewed against OpenAI's chat completion, chunk,
embedding and error shapes. Gemini's sides are also validated against the ``google-genai``
SDK's own types (``extra="forbid"``: a misspelt field fails).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def golden(name: str) -> dict[str, Any]:
    """The fixture ``name`` (a file in this directory)."""
    loaded: dict[str, Any] = json.loads((HERE / name).read_text())
    assert loaded["source"].startswith("https://"), f"{name} cites no reference page"
    return loaded
