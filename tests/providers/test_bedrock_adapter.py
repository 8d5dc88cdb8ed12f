"""The bedrock adapter: URLs, regions, SigV4 with botocore's signer, credentials from the
target or the AWS chain, key custody; and, in-process, what a client and telemetry see."""

from __future__ import annotations

import io
from types import MappingProxyType
from typing import Any

import httpx
import orjson
import pytest
import structlog
from botocore.credentials import Credentials
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from relaygate.config.model import Secret, Target
from relaygate.errors import GatewayError
from relaygate.exchange import Operation
from relaygate.exporters import semconv as sc
from relaygate.exporters.logging import processors
from relaygate.mock.bedrock import event_frame, signature_problem
from relaygate.providers.base import UpstreamRequest
from relaygate.providers.bedrock import Bedrock
from relaygate.providers.bedrock.signing import CredentialChain, chain_region
from relaygate.telemetry import Telemetry
from tests.fakes import ChunkStream, RecordingTransport, gateway_request, target
from tests.inprocess import asgi_client, gateway_app

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
KEY_ID = "AKIDEXAMPLE"
SECRET = "canary-secret-9f8e7d"
THROTTLED = "Too many requests, please wait before trying again."
TOKEN = "canary-token-1a2b3c"


def chain(credentials: Any = None, region: str | None = None) -> CredentialChain:
    return CredentialChain(lambda: (credentials, region))


def bedrock_target(caller: frozenset[str] = frozenset(), **options: Any) -> Target:
    custom_host = options.pop("custom_host", None)
    return target(
        "config",
        "bedrock",
        custom_host=custom_host,
        provider_options=MappingProxyType(options),
        caller_fields=caller,
    )


def keys(token: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "aws_access_key_id": Secret(KEY_ID),
        "aws_secret_access_key": Secret(SECRET),
    }
    if token:
        out["aws_session_token"] = Secret(token)
    return out


def build(
    tgt: Target, adapter: Bedrock | None = None, *, stream: bool = False, body: Any = None
) -> UpstreamRequest:
    request = gateway_request(body or CHAT, stream=stream, target=tgt)
    return (adapter or Bedrock(chain())).build_request(request, tgt, {"traceparent": "00-ab-cd-01"})


def test_a_target_with_keys_and_region_is_signed_for_its_regional_endpoint() -> None:
    wire = build(bedrock_target(aws_region="eu-central-1", **keys()))
    assert wire.url == (
        "https://bedrock-runtime.eu-central-1.amazonaws.com/model/"
        "anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    )
    auth = wire.headers["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert "/eu-central-1/bedrock/aws4_request" in auth
    assert signature_problem(wire.headers, KEY_ID) is None
    assert wire.headers["traceparent"] == "00-ab-cd-01"  # sent, unsigned (botocore's rule)
    assert "x-amz-security-token" not in wire.headers
    assert all(SECRET not in value for value in wire.headers.values())
    sent = orjson.loads(wire.content)
    assert sent == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}


def test_a_session_token_is_sent_as_x_amz_security_token() -> None:
    wire = build(bedrock_target(**keys(TOKEN)))
    assert wire.headers["x-amz-security-token"] == TOKEN


def test_a_stream_asks_converse_stream_for_an_eventstream() -> None:
    wire = build(bedrock_target(**keys()), stream=True)
    assert wire.url.endswith("/converse-stream")
    assert wire.stream
    assert wire.headers["accept"] == "application/vnd.amazon.eventstream"
    assert "application/vnd.amazon.eventstream" in wire.stream_content_types


def test_without_keys_the_aws_chain_signs_in_its_region() -> None:
    adapter = Bedrock(chain(Credentials("AKIDCHAIN", "chain-secret"), "ap-south-1"))
    wire = build(bedrock_target(), adapter)
    assert wire.url.startswith("https://bedrock-runtime.ap-south-1.amazonaws.com/")
    assert "Credential=AKIDCHAIN/" in wire.headers["authorization"]


def test_with_no_region_anywhere_us_east_1_is_used() -> None:
    wire = build(bedrock_target(**keys()))
    assert wire.url.startswith("https://bedrock-runtime.us-east-1.amazonaws.com/")


def test_no_credentials_anywhere_is_a_401() -> None:
    with pytest.raises(GatewayError) as caught:
        build(bedrock_target())
    assert (caught.value.status, caught.value.code) == (401, "missing_credentials")


def test_the_operators_credentials_never_sign_for_a_callers_host() -> None:
    adapter = Bedrock(chain(Credentials("AKIDCHAIN", "chain-secret")))
    tgt = bedrock_target(frozenset({"custom_host"}), custom_host="http://evil.test")
    with pytest.raises(GatewayError) as caught:
        build(tgt, adapter)
    assert (caught.value.status, caught.value.code) == (403, "key_custody")
    operator_keys = bedrock_target(
        frozenset({"custom_host"}), custom_host="http://evil.test", **keys()
    )
    with pytest.raises(GatewayError):
        build(operator_keys)


def test_a_caller_may_send_its_own_keys_to_its_own_host() -> None:
    caller = frozenset({"custom_host", "aws_access_key_id", "aws_secret_access_key"})
    wire = build(bedrock_target(caller, custom_host="http://sim.test", **keys()))
    assert wire.url == "http://sim.test/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"


def test_override_params_model_wins_and_arns_are_one_path_segment() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude"
    tgt = target(
        "config", "bedrock", override_params=MappingProxyType({"model": arn}),
        provider_options=MappingProxyType(keys()),
    )  # fmt: skip
    wire = build(tgt)
    encoded = "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus."
    assert f"/model/{encoded}" in wire.url
    assert b"model" not in wire.content


def test_embeddings_are_not_served() -> None:
    tgt = bedrock_target(**keys())
    request = gateway_request({"input": "x", "model": "m"}, operation=Operation.EMBEDDINGS)
    with pytest.raises(GatewayError) as caught:
        Bedrock(chain()).build_request(request, tgt, {})
    assert caught.value.code == "unsupported_operation"


# -- in-process: the gateway over a scripted Bedrock ---------------------------------------

CONFIG = {
    "default_config": {
        "provider": "bedrock",
        "custom_host": "http://bedrock.test",
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
        "aws_session_token": TOKEN,
        "aws_region": "us-west-2",
    },
    "telemetry": {"logs": {"level": "debug"}},
}


def converse_answer(request: httpx.Request) -> httpx.Response:
    assert signature_problem(request.headers, KEY_ID) is None
    if request.url.path.endswith("/converse-stream"):
        frames = [
            event_frame("messageStart", {"role": "assistant"}),
            event_frame("contentBlockDelta", {"delta": {"text": "Hi!"}, "contentBlockIndex": 0}),
            event_frame("messageStop", {"stopReason": "end_turn"}),
            event_frame("metadata", {"usage": {"inputTokens": 5, "outputTokens": 2}}),
        ]
        return httpx.Response(
            200,
            headers={"content-type": "application/vnd.amazon.eventstream"},
            stream=ChunkStream(frames),
        )
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": "Hi!"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
    }
    return httpx.Response(200, json=body)


def throttled(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        429,
        headers={"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/coral/"},
        json={"message": THROTTLED},
    )


async def call(
    telemetry: Telemetry, reply: Any, *, stream: bool
) -> tuple[httpx.Response, list[Any]]:
    app = gateway_app(CONFIG, telemetry, RecordingTransport(reply))
    with structlog.testing.capture_logs() as logs:
        async with asgi_client(app) as client:
            response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
            metrics = (await client.get("/metrics")).text
    rendered = io.StringIO()
    for entry in logs:
        event = dict(entry)
        for proc in processors("json"):
            event = proc(None, event.get("log_level", "info"), event)
        rendered.write(str(event))
    return response, [metrics, rendered.getvalue(), orjson.dumps(logs, default=str).decode()]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_bedrock_answer_reaches_the_client_in_openai_shape_with_aws_bedrock_telemetry(
    stream: bool, telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    response, _ = await call(telemetry, converse_answer, stream=stream)
    assert response.status_code == 200
    if stream:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert '"content":"Hi!"' in response.text
        assert response.text.endswith("data: [DONE]\n\n")
    else:
        assert response.headers["content-type"] == "application/json"
        payload = response.json()
        assert payload["choices"][0]["message"]["content"] == "Hi!"
        assert payload["usage"]["total_tokens"] == 7
    (attributes,) = [
        span.attributes
        for span in spans.get_finished_spans()
        if span.attributes
        and sc.GEN_AI_USAGE_INPUT_TOKENS in span.attributes
        and sc.GEN_AI_PROVIDER_NAME in span.attributes
    ]
    assert attributes[sc.GEN_AI_PROVIDER_NAME] == "aws.bedrock"
    assert attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 5
    assert attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 2


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_throttling_is_an_openai_429_and_no_secret_or_signature_leaks(
    stream: bool, telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    signatures: list[str] = []

    def reply(request: httpx.Request) -> httpx.Response:
        signatures.append(request.headers["authorization"].rsplit("Signature=", 1)[1])
        return throttled(request)

    response, texts = await call(telemetry, reply, stream=stream)
    assert response.status_code == 429
    assert response.json()["error"] == {
        "message": f"bedrock ThrottlingException: {THROTTLED}",
        "type": "rate_limit_error",
        "param": None,
        "code": "ThrottlingException",
    }
    secrets = [SECRET, TOKEN, *signatures]
    seen = [response.text, *(f"{k}: {v}" for k, v in response.headers.items()), *texts]
    seen.append(generate_latest(telemetry.metrics.registry).decode())
    seen += [span.to_json() for span in spans.get_finished_spans()]
    for secret in secrets:
        assert all(secret not in text for text in seen)


async def test_the_credential_chain_is_resolved_off_the_event_loop_once() -> None:
    import threading

    threads: list[int] = []

    def resolve() -> tuple[Any, str | None]:
        threads.append(threading.get_ident())
        return Credentials(KEY_ID, SECRET), "eu-west-1"

    adapter = Bedrock(CredentialChain(resolve))
    tgt = bedrock_target()
    await adapter.prepare(tgt)
    await adapter.prepare(tgt)
    assert len(threads) == 1 and threads[0] != threading.get_ident()
    wire = adapter.build_request(gateway_request(CHAT, target=tgt), tgt, {})
    assert wire.url.startswith("https://bedrock-runtime.eu-west-1.amazonaws.com/")


async def test_a_target_with_keys_and_region_never_resolves_the_chain() -> None:
    def resolve() -> tuple[Any, str | None]:
        raise AssertionError("the chain was resolved")

    adapter = Bedrock(CredentialChain(resolve))
    tgt = bedrock_target(aws_region="us-west-2", **keys())
    await adapter.prepare(tgt)
    wire = adapter.build_request(gateway_request(CHAT, target=tgt), tgt, {})
    assert wire.url.startswith("https://bedrock-runtime.us-west-2.amazonaws.com/")


@pytest.mark.parametrize(
    ("environ", "configured", "region"),
    [
        ({"AWS_REGION": "eu-north-1"}, "us-west-2", "eu-north-1"),
        ({"AWS_REGION": ""}, "us-west-2", "us-west-2"),
        ({}, "ap-south-1", "ap-south-1"),
        ({}, None, None),
        ({}, "", None),
    ],
)
def test_the_chain_region_prefers_aws_region_then_botocores(
    environ: dict[str, str], configured: str | None, region: str | None
) -> None:
    # botocore itself reads only AWS_DEFAULT_REGION and the profile (``configured``).
    assert chain_region(configured, environ) == region
