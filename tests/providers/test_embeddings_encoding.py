"""Embedding answers always reach the client in the encoding it asked for."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from relaygate.exchange import Operation
from relaygate.providers.client import UpstreamResponse
from relaygate.providers.embeddings import conform, decode_floats, encode_floats
from relaygate.providers.handler import ProviderHandler
from relaygate.providers.registry import default_registry
from tests.fakes import FakeUpstream, gateway_request, target, upstream_json

VECTOR = [0.5, -1.25, 3.0, 0.0]
ENCODED = base64.b64encode(struct.pack("<4f", *VECTOR)).decode()


def embeddings(*vectors: Any) -> dict[str, Any]:
    """An OpenAI embeddings answer holding ``vectors``."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }


def test_floats_are_encoded_as_base64_of_little_endian_float32() -> None:
    assert encode_floats([1.0]) == "AACAPw=="
    assert encode_floats(VECTOR) == ENCODED


def test_decoding_inverts_encoding() -> None:
    assert decode_floats(encode_floats(VECTOR)) == VECTOR


def test_float_vectors_are_encoded_when_base64_was_asked_for() -> None:
    payload = embeddings(VECTOR, [1.0])
    assert conform(payload, "base64") is True
    assert [d["embedding"] for d in payload["data"]] == [ENCODED, "AACAPw=="]


@pytest.mark.parametrize("requested", ["float", None])
def test_base64_vectors_are_decoded_when_floats_or_nothing_was_asked_for(
    requested: str | None,
) -> None:
    payload = embeddings(ENCODED)
    assert conform(payload, requested) is True
    assert payload["data"][0]["embedding"] == VECTOR


@pytest.mark.parametrize(
    ("vector", "requested"), [(VECTOR, "float"), (VECTOR, None), (ENCODED, "base64")]
)
def test_vectors_already_in_the_asked_encoding_are_left_alone(
    vector: Any, requested: str | None
) -> None:
    payload = embeddings(vector)
    assert conform(payload, requested) is False
    assert payload["data"][0]["embedding"] == vector


@pytest.mark.parametrize(
    "payload",
    [{"data": "nope"}, {"object": "list"}, [1, 2], {"data": [1, {"embedding": None}]}],
    ids=["data-not-list", "no-data", "not-object", "odd-entries"],
)
def test_answers_of_another_shape_are_left_alone(payload: Any) -> None:
    before = orjson.dumps(payload)
    assert conform(payload, "base64") is False
    assert orjson.dumps(payload) == before


async def answered(requested: str | None, upstream_payload: dict[str, Any] | bytes) -> bytes:
    """The body the client receives when it asks for ``requested`` and the upstream
    answers ``upstream_payload``."""
    body: dict[str, Any] = {"model": "text-embedding-3-small", "input": "hi"}
    if requested is not None:
        body["encoding_format"] = requested
    if isinstance(upstream_payload, bytes):
        reply = UpstreamResponse(200, {"content-type": "application/json"}, upstream_payload)
    else:
        reply = upstream_json(upstream_payload)
    upstream = FakeUpstream(reply)
    handler = ProviderHandler(default_registry(), upstream)
    request = gateway_request(body, operation=Operation.EMBEDDINGS, target=target())
    response = await handler(request)
    assert response.status == 200
    assert response.body is not None
    return response.body


async def test_the_client_asking_base64_gets_base64_from_a_float_only_provider() -> None:
    body = await answered("base64", embeddings(VECTOR))
    assert orjson.loads(body)["data"][0]["embedding"] == ENCODED


async def test_the_client_asking_nothing_gets_floats_from_a_base64_answer() -> None:
    body = await answered(None, embeddings(ENCODED))
    assert orjson.loads(body)["data"][0]["embedding"] == VECTOR


async def test_an_answer_already_in_the_asked_encoding_keeps_its_exact_bytes() -> None:
    raw = b'{ "object": "list",\n  "data": [{"index": 0, "embedding": [0.5, -1.25]}] }'
    assert await answered("float", raw) == raw


@pytest.mark.parametrize(
    ("requested", "vector"),
    [("float", "A"), ("float", "AAA"), ("base64", ["x"]), ("base64", [1e300]), ("base64", [None])],
    ids=["short-base64", "bad-padding", "string-item", "beyond-float32", "null-item"],
)
def test_an_embedding_that_cannot_be_converted_raises_value_error(
    requested: str, vector: Any
) -> None:
    with pytest.raises(ValueError, match="cannot be converted"):
        conform(embeddings(vector), requested)


async def test_an_embedding_that_cannot_be_converted_is_a_502_invalid_response() -> None:
    upstream = FakeUpstream(upstream_json(embeddings(["not", "numbers"])))
    handler = ProviderHandler(default_registry(), upstream)
    body = {"model": "m", "input": "x", "encoding_format": "base64"}
    response = await handler(gateway_request(body, operation=Operation.EMBEDDINGS, target=target()))
    assert response.status == 502
    assert response.failure == "invalid_response"
    assert response.body is not None
    assert orjson.loads(response.body)["error"]["code"] == "upstream_invalid_response"
