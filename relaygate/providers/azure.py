"""Azure OpenAI: OpenAI's wire format behind deployment URLs and an ``api-key`` header.

URL: ``https://{resource_name}.openai.azure.com/openai/deployments/{deployment_id}/{op}
?api-version={api_version}``; ``custom_host`` replaces everything before ``/deployments``.
Responses API requests go to Azure's v1 route, ``.../openai/v1/responses``, with the
deployment as the ``model`` unless ``override_params`` name one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from relaygate.config.model import Target
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, Operation
from relaygate.providers.base import UpstreamRequest
from relaygate.providers.openai_compat import (
    OPENAI_PATHS,
    RESPONSES_PATHS,
    OpenAICompatible,
    parse_json_object,
)

DEFAULT_API_VERSION = "2024-10-21"


@dataclass(frozen=True, slots=True)
class AzureOpenAI:
    """The ``azure-openai`` provider.

    Reads ``resource_name``, ``deployment_id`` and ``api_version`` from the target.
    """

    name: str = "azure-openai"
    operations: frozenset[Operation] = frozenset({*OPENAI_PATHS, Operation.RESPONSES})

    def build_request(
        self, request: GatewayRequest, target: Target, extra_headers: Mapping[str, str]
    ) -> UpstreamRequest:
        """See :meth:`relaygate.providers.base.ProviderAdapter.build_request`."""
        options = target.provider_options
        deployment = options.get("deployment_id")
        resource = options.get("resource_name")
        if not deployment or not (resource or target.custom_host):
            raise GatewayError(
                400,
                f"target {target.path}: azure-openai needs deployment_id and "
                "resource_name (or custom_host)",
                code="invalid_config",
            )
        version = options.get("api_version") or DEFAULT_API_VERSION
        base = target.custom_host or f"https://{resource}.openai.azure.com/openai"
        if request.operation is Operation.RESPONSES:
            url = f"{base}/v1/responses"
            if not target.model:
                target = replace(target, override_params={"model": deployment})
        else:
            url = (
                f"{base}/deployments/{deployment}{OPENAI_PATHS[request.operation]}"
                f"?api-version={version}"
            )
        inner = OpenAICompatible(
            self.name,
            base,
            auth_header="api-key",
            auth_prefix="",
            operations=self.operations,
            paths=RESPONSES_PATHS,
        )
        built = inner.build_request(request, target, extra_headers)
        return UpstreamRequest(
            method=built.method,
            url=url,
            headers=built.headers,
            content=built.content,
            stream=built.stream,
            idle_timeout_s=built.idle_timeout_s,
        )

    def parse_response(self, request: GatewayRequest, status: int, body: bytes) -> Any:
        """See :meth:`relaygate.providers.base.ProviderAdapter.parse_response`."""
        return parse_json_object(body)
