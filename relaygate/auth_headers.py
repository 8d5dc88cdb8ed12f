"""Header facts shared by the edge and the layers."""

from __future__ import annotations

PORTKEY_PLACEHOLDER_KEY = "OPENAI_API_KEY"
"""What the Portkey SDK sends as ``Authorization: Bearer`` when the user gave no key: not a key."""
