"""The fault simulator's faults for streaming deadlines, refusals, flapping and comparable
answers: ``first_token_delay_ms``, ``stall_after_chunks``, ``content_filter``,
``content_policy_violation``, timed script steps (``for_ms``) and ``text="request"``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from relaygate.mock import (
    Fault,
    MockSettings,
    add_mock_arguments,
    create_mock_app,
    parse_faults,
    settings_from_args,
)
from relaygate.mock.faults import REQUEST_TEXT_WORDS
from relaygate.mock.state import _MockState
from tests.servers import serve_in_thread

CHAT: dict[str, Any] = {
    "model": "gpt-test",
    "messages": [{"role": "user", "content": "Tell me something."}],
}
PROMPT_WAIT_S = 0.3
"""How long a test waits to see that a chunk does not come promptly (the fault delays it by
a minute)."""


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("200@first_token_delay_ms=3000", Fault(first_token_delay_ms=3000.0)),
        ("200@stall_after_chunks=3", Fault(stall_after_chunks=3)),
        ("stall", Fault(stall_after_chunks=2)),
        ("stall@stall_after_chunks=0", Fault(stall_after_chunks=0)),
        ("content_filter", Fault(status=400, error_code="content_filter")),
        (
            "content_policy_violation",
            Fault(status=400, error_code="content_policy_violation"),
        ),
        ("403@error_code=unsupported_country", Fault(status=403, error_code="unsupported_country")),
        ("503@for_ms=60000", Fault(status=503, for_ms=60000.0)),
    ],
)
def test_the_new_faults_in_the_script_syntax(spec: str, expected: Fault) -> None:
    assert parse_faults(spec) == (expected,)


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("503@for_ms=0", "for_ms must be a finite number > 0"),
        ("200@stall_after_chunks=-1", "stall_after_chunks must be an integer >= 0"),
        ("200@first_token_delay_ms=-5", "first_token_delay_ms must be a finite number >= 0"),
        ("400@error_code=a b", "error_code must be 1-64 letters"),
    ],
)
def test_bad_values_of_the_new_faults_are_refused_naming_the_field(
    spec: str, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_faults(spec)


class Clock:
    """A settable monotonic clock (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answers(state: _MockState, clock: Clock, times: list[float]) -> list[int]:
    """The status scripted for a request at each of ``times``."""
    statuses = []
    for at in times:
        clock.now = at
        statuses.append(state.next_fault().status)
    return statuses


def test_a_timed_step_answers_every_request_of_its_window_then_the_script_moves_on() -> None:
    clock = Clock()
    state = _MockState(MockSettings(script=parse_faults("503@for_ms=1000,429,200")), clock)
    assert answers(state, clock, [0.0, 0.4, 0.99, 1.0, 1.1, 1.2]) == [503, 503, 503, 429, 200, 200]


def test_a_looping_pair_of_timed_steps_is_a_primary_that_flaps_on_the_clock() -> None:
    clock = Clock()
    settings = MockSettings(
        script=parse_faults("503@for_ms=1000,200@for_ms=1000"), loop_script=True
    )
    state = _MockState(settings, clock)
    assert answers(state, clock, [5.0, 5.9, 6.0, 6.9, 7.0, 9.5, 10.2]) == [
        503,  # the first window starts with the first request
        503,
        200,
        200,
        503,
        503,  # windows follow the clock even when no request fell into them (7-8, 8-9)
        200,
    ]


def test_a_long_quiet_spell_skips_whole_cycles_of_a_flapping_script() -> None:
    clock = Clock()
    settings = MockSettings(script=parse_faults("503@for_ms=1,200@for_ms=1"), loop_script=True)
    state = _MockState(settings, clock)
    assert answers(state, clock, [0.0, 86_400.0005, 86_400.0015]) == [503, 503, 200]


def test_a_reset_starts_the_windows_again() -> None:
    clock = Clock()
    state = _MockState(MockSettings(script=parse_faults("503@for_ms=1000,200")), clock)
    assert answers(state, clock, [0.0, 2.0]) == [503, 200]
    state.reset()
    assert answers(state, clock, [3.0, 3.5]) == [503, 503]


@contextlib.asynccontextmanager
async def client_of(settings: MockSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of an in-process simulator (whole answers only)."""
    transport = httpx.ASGITransport(app=create_mock_app(settings))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://mock.test") as client:
        yield client


@pytest.mark.parametrize("code", ["content_filter", "content_policy_violation"])
async def test_a_content_refusal_is_an_openai_shaped_400_with_its_code(code: str) -> None:
    async with client_of(MockSettings(name="safe")) as client:
        response = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"x-mock-fault": code}
        )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": f"mock safe: simulated {code}",
            "type": "invalid_request_error",
            "param": None,
            "code": code,
        }
    }


async def test_request_text_is_the_same_from_every_simulator_and_differs_by_prompt() -> None:
    async def content(name: str, body: dict[str, Any]) -> str:
        async with client_of(MockSettings(name=name, text="request")) as client:
            response = await client.post("/v1/chat/completions", json=body)
        text: str = response.json()["choices"][0]["message"]["content"]
        return text

    first = await content("primary", CHAT)
    assert first == await content("backup", {**CHAT, "model": "another-model"})
    other = {**CHAT, "messages": [{"role": "user", "content": "Something else."}]}
    assert first != await content("primary", other)
    assert len(first.split()) == REQUEST_TEXT_WORDS
    assert first[0].isupper() and first.endswith(".")


async def test_a_streamed_request_text_joins_to_the_whole_answer() -> None:
    settings = MockSettings(name="s", text="request", stream_chunks=7)
    async with client_of(settings) as client:
        whole = (await client.post("/v1/chat/completions", json=CHAT)).json()
        streamed = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = [line[6:] for line in streamed.text.split("\n") if line.startswith("data: {")]
    pieces = [orjson.loads(e)["choices"][0]["delta"].get("content", "") for e in events]
    assert "".join(pieces) == whole["choices"][0]["message"]["content"]
    assert whole["usage"]["completion_tokens"] == REQUEST_TEXT_WORDS


async def test_the_greeting_stays_the_default_text() -> None:
    async with client_of(MockSettings(name="alpha")) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.json()["choices"][0]["message"]["content"] == "Hello from alpha"


@contextlib.contextmanager
def live(settings: MockSettings) -> Iterator[str]:
    """A simulator under uvicorn on loopback (streams arrive as they are sent)."""
    with serve_in_thread(create_mock_app(settings)) as server:
        yield server.url


async def next_line(lines: AsyncIterator[str]) -> str:
    """The next non-empty SSE line."""
    while not (line := await lines.__anext__()):
        pass
    return line


async def test_a_late_first_token_comes_after_headers_and_the_opening_chunk() -> None:
    with live(MockSettings(name="slow")) as url:
        async with (
            httpx.AsyncClient(base_url=url, trust_env=False) as client,
            client.stream(
                "POST",
                "/v1/chat/completions",
                json={**CHAT, "stream": True},
                headers={"x-mock-fault": "200@first_token_delay_ms=60000"},
            ) as response,
        ):
            assert response.status_code == 200
            lines = response.aiter_lines()
            opening = orjson.loads((await next_line(lines))[6:])
            assert opening["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(next_line(lines), PROMPT_WAIT_S)


async def test_a_stall_sends_its_chunks_then_nothing_and_keeps_the_connection_open() -> None:
    with live(MockSettings(name="stalling")) as url:
        async with (
            httpx.AsyncClient(base_url=url, trust_env=False) as client,
            client.stream(
                "POST",
                "/v1/chat/completions",
                json={**CHAT, "stream": True},
                headers={"x-mock-fault": "200@stall_after_chunks=3"},
            ) as response,
        ):
            lines = response.aiter_lines()
            received = [await next_line(lines) for _ in range(3)]
            assert all(line.startswith("data: {") for line in received)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(next_line(lines), PROMPT_WAIT_S)


async def test_a_stall_ends_in_a_cut_once_hang_s_has_passed() -> None:
    with live(MockSettings(name="bounded", hang_s=0.2)) as url:
        async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
            received: list[str] = []
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                async with client.stream(
                    "POST",
                    "/v1/chat/completions",
                    json={**CHAT, "stream": True},
                    headers={"x-mock-fault": "stall"},
                ) as response:
                    async for line in response.aiter_lines():
                        if line:
                            received.append(line)
    assert len(received) == 2


def test_the_command_line_chooses_the_answer_text() -> None:
    parser = argparse.ArgumentParser()
    add_mock_arguments(parser)
    assert settings_from_args(parser.parse_args([])).text == "greeting"
    assert settings_from_args(parser.parse_args(["--text", "request"])).text == "request"
    with pytest.raises(SystemExit):
        parser.parse_args(["--text", "poetry"])
