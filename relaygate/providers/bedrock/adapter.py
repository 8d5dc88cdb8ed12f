"""The ``bedrock`` provider: OpenAI chat requests served by Bedrock's Converse API.

Thin glue over pure parts: :mod:`.converse` (bodies and errors), :mod:`.stream`
(eventstream → chunks) and :mod:`.signing` (credentials and botocore's SigV4 signer).

URL: ``https://bedrock-runtime.{region}.amazonaws.com/model/{modelId}/converse`` (and
``/converse-stream`` for ``"stream": true``); ``custom_host`` replaces everything before
``/model``. The model is the target's ``override_params.model`` or the request's ``model``
(a Bedrock model id, inference profile or ARN). The region is the target's ``aws_region``,
else the AWS configuration's, else ``us-east-1``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import orjson

from relaygate.config.model import Target
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, Operation
from relaygate.providers.base import UpstreamRequest
from relaygate.providers.bedrock.converse import (
    PARAMETERS,
    from_converse,
    openai_error,
    to_converse,
)
from relaygate.providers.bedrock.signing import CredentialChain, configured_credentials, sign
from relaygate.providers.bedrock.stream import ConverseStreamTranslator
from relaygate.providers.openai_compat import json_headers, parse_json_object
from relaygate.providers.parameters import check_parameters
from relaygate.security.custody import caller_destination
from relaygate.strategies.attempt_bound import stream_idle_s
from relaygate.translate import StreamTranslator

DEFAULT_REGION = "us-east-1"
EVENTSTREAM = "application/vnd.amazon.eventstream"


def _new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class Bedrock:
    """The ``bedrock`` adapter (a :class:`~relaygate.providers.base.TranslatingAdapter`).

    ``chain`` is the AWS credential chain used when a target sets no key pair; ``new_id``
    and ``clock`` make the ``id`` and ``created`` of translated answers.
    """

    name = "bedrock"
    stream_content_types: tuple[str, ...] = (EVENTSTREAM,)

    def __init__(
        self,
        chain: CredentialChain | None = None,
        *,
        new_id: Callable[[], str] = _new_id,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._chain = chain or CredentialChain()
        self._new_id = new_id
        self._clock = clock

    async def prepare(self, target: Target) -> None:
        """Resolve the AWS credential chain in a worker thread the first time a request
        needs it (a target without a key pair or a region), so the event loop never waits
        on botocore's resolver (which may ask an instance metadata service)."""
        if self._chain.resolved:
            return
        options = target.provider_options
        if configured_credentials(options) is None or not options.get("aws_region"):
            await asyncio.to_thread(self._chain.ensure)

    def build_request(
        self, request: GatewayRequest, target: Target, extra_headers: Mapping[str, str]
    ) -> UpstreamRequest:
        """See :meth:`relaygate.providers.base.ProviderAdapter.build_request`."""
        if request.operation is not Operation.CHAT:
            raise GatewayError(
                400,
                f"provider 'bedrock' does not serve {request.operation.value}",
                code="unsupported_operation",
            )
        model = target.model or request.model
        if not model:
            raise GatewayError(
                400,
                "bedrock needs a model (a Bedrock model id)",
                code="invalid_value",
                param="model",
            )
        body = (
            {**request.body, **target.override_params} if target.override_params else request.body
        )
        check_parameters(PARAMETERS, request, target, body)
        content = orjson.dumps(to_converse(body))
        options = target.provider_options
        credentials = configured_credentials(options)
        own = credentials is not None and "aws_access_key_id" in target.caller_fields
        if caller_destination(target) and not own:
            raise GatewayError(
                403,
                f"{target.path} would sign with the operator's AWS credentials for a "
                "caller-supplied host; a caller-supplied custom_host must come with the "
                "caller's own aws_access_key_id and aws_secret_access_key",
                type="permission_error",
                code="key_custody",
            )
        if credentials is None:
            credentials = self._chain.credentials()
        if credentials is None:
            raise GatewayError(
                401,
                f"{target.path}: bedrock found no AWS credentials (set aws_access_key_id and "
                "aws_secret_access_key, or the AWS environment or profile)",
                type="authentication_error",
                code="missing_credentials",
            )
        region = options.get("aws_region") or self._chain.region() or DEFAULT_REGION
        base = target.custom_host or f"https://bedrock-runtime.{region}.amazonaws.com"
        action = "converse-stream" if request.stream else "converse"
        url = f"{base}/model/{quote(model, safe='')}/{action}"
        headers = json_headers(request.stream, extra_headers, accept_stream=EVENTSTREAM)
        return UpstreamRequest(
            method="POST",
            url=url,
            headers=sign(credentials, region, url, headers, content),
            content=content,
            stream=request.stream,
            idle_timeout_s=stream_idle_s(target.stream_idle_timeout_ms, target.request_timeout_ms),
            stream_content_types=self.stream_content_types,
        )

    def _model(self, request: GatewayRequest) -> str:
        target = request.target
        return (target.model if target is not None else None) or request.model or "bedrock"

    def parse_response(self, request: GatewayRequest, status: int, body: bytes) -> Any:
        """See :meth:`relaygate.providers.base.ProviderAdapter.parse_response`."""
        return from_converse(
            parse_json_object(body),
            model=self._model(request),
            response_id=self._new_id(),
            created=int(self._clock()),
        )

    def stream_translator(self, request: GatewayRequest) -> StreamTranslator:
        """See :meth:`relaygate.providers.base.TranslatingAdapter.stream_translator`."""
        options = request.body.get("stream_options")
        return ConverseStreamTranslator(
            response_id=self._new_id(),
            model=self._model(request),
            created=int(self._clock()),
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        )

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        """See :meth:`relaygate.providers.base.TranslatingAdapter.error_body`."""
        return openai_error(status, headers, body)
