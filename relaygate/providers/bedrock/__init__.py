"""Amazon Bedrock's Converse and ConverseStream APIs behind OpenAI's chat format.

:mod:`.converse` translates requests, answers and errors (pure functions),
:mod:`.stream` turns the ``application/vnd.amazon.eventstream`` framing into OpenAI chunks,
:mod:`.signing` signs requests with botocore's SigV4 signer, and :mod:`.adapter` is the
thin :class:`~relaygate.providers.base.ProviderAdapter` gluing them together.
"""

from relaygate.providers.bedrock.adapter import Bedrock

__all__ = ["Bedrock"]
