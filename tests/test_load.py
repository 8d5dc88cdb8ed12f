"""The load board (in flight, peak-EWMA latency) and the layer that feeds it."""

from __future__ import annotations

import math

import pytest

from relaygate.exchange import GatewayResponse, ResponseStream
from relaygate.load import LoadBoard, target_key
from relaygate.middleware.fallback import FallbackLayer
from relaygate.middleware.load import LoadLayer
from relaygate.strategies.balance import FAILURE_PENALTY_S, Load
from relaygate.telemetry import Telemetry
from tests.fakes import (
    ScriptedHandler,
    ScriptedRand,
    StreamBody,
    answer,
    gateway_request,
    routing,
    strategy,
    target,
)

A = target("config.targets[0]", name="a", custom_host="http://a.test/v1")
B = target("config.targets[1]", name="b", custom_host="http://b.test/v1")
KA, KB = target_key(A), target_key(B)


def test_targets_calling_the_same_endpoint_share_a_key() -> None:
    twin = target("config.targets[5]", name="other-name", custom_host="http://a.test/v1")
    assert target_key(twin) == KA
    assert KA != KB


def test_in_flight_counts_started_minus_finished() -> None:
    board = LoadBoard()
    board.started(KA)
    board.started(KA)
    board.finished(KA)
    assert board.load(KA, 0.0).in_flight == 1
    board.finished(KA)
    board.finished(KA)
    assert board.load(KA, 0.0).in_flight == 0


def test_a_higher_sample_replaces_the_estimate_at_once() -> None:
    board = LoadBoard(decay_s=10.0)
    board.observe(KA, 0.1, now=0.0)
    board.observe(KA, 2.0, now=0.0)
    assert board.load(KA, 0.0).latency_s == 2.0


def test_a_lower_sample_is_blended_in_by_the_time_since_the_last() -> None:
    board = LoadBoard(decay_s=10.0)
    board.observe(KA, 2.0, now=0.0)
    board.observe(KA, 0.1, now=10.0)
    w = math.exp(-1.0)
    assert board.load(KA, 10.0).latency_s == pytest.approx(2.0 * w + 0.1 * (1 - w))


def test_the_estimate_decays_towards_zero_between_samples() -> None:
    board = LoadBoard(decay_s=10.0)
    board.observe(KA, 5.0, now=0.0)
    assert board.load(KA, 20.0).latency_s == pytest.approx(5.0 * math.exp(-2.0))
    assert board.load(KB, 20.0) == Load()


def test_a_full_board_drops_idle_entries_and_never_grows_past_its_bound() -> None:
    board = LoadBoard(max_keys=2)
    board.observe(KA, 1.0, 0.0)
    assert board.started(KB)
    third = ("openai", "http://c.test/v1", "", "", "")
    assert board.started(third)  # KA was idle and dropped
    assert board.load(KA, 0.0) == Load()
    fourth = ("openai", "http://d.test/v1", "", "", "")
    assert not board.started(fourth)  # both tracked entries are in flight
    assert board.load(fourth, 0.0) == Load()


async def test_the_layer_counts_an_attempt_in_flight_until_its_answer() -> None:
    board = LoadBoard()
    seen: list[int] = []

    async def inner(request: object) -> GatewayResponse:
        seen.append(board.load(KA, 0.0).in_flight)
        return answer(200)

    clock = iter([1.0, 1.25])
    layer = LoadLayer(board, now=lambda: next(clock))
    await layer(inner)(gateway_request(target=A))
    assert seen == [1]
    assert board.load(KA, 1.25) == Load(in_flight=0, latency_s=0.25)


async def test_a_streamed_attempt_stays_in_flight_until_the_stream_ends() -> None:
    board = LoadBoard()
    stream = ResponseStream(StreamBody([b"data: {}\n\n"]), b"data: {}\n\n")

    async def inner(request: object) -> GatewayResponse:
        return GatewayResponse(status=200, stream=stream)

    layer = LoadLayer(board, now=lambda: 0.0)
    response = await layer(inner)(gateway_request(target=A))
    assert board.load(KA, 0.0).in_flight == 1
    assert response.stream is not None
    async for _ in response.stream:
        pass
    assert board.load(KA, 0.0).in_flight == 0


async def test_a_failed_attempt_counts_as_at_least_the_failure_penalty() -> None:
    board = LoadBoard()
    layer = LoadLayer(board, now=lambda: 0.0)
    await layer(ScriptedHandler(answer(503)))(gateway_request(target=A))
    assert board.load(KA, 0.0).latency_s == FAILURE_PENALTY_S


async def test_least_in_flight_routes_to_the_idle_target(telemetry: Telemetry) -> None:
    board = LoadBoard()
    board.started(KA)
    node = strategy("config", "loadbalance", A, B, balance="least_in_flight")
    inner = ScriptedHandler(answer(200), answer(200))
    layer = FallbackLayer(telemetry, rand=ScriptedRand(0.0, 0.0), now=lambda: 0.0, loads=board)
    for _ in range(2):
        await layer(inner)(gateway_request(config=routing(node)))
    assert inner.paths == [B.path, B.path]


async def test_p2c_ewma_routes_to_the_faster_target(telemetry: Telemetry) -> None:
    board = LoadBoard()
    board.observe(KA, 3.0, 0.0)
    board.observe(KB, 0.2, 0.0)
    node = strategy("config", "loadbalance", A, B, balance="p2c_ewma")
    inner = ScriptedHandler(answer(200))
    layer = FallbackLayer(telemetry, rand=ScriptedRand(0.0, 0.0), now=lambda: 0.0, loads=board)
    await layer(inner)(gateway_request(config=routing(node)))
    assert inner.paths == [B.path]
