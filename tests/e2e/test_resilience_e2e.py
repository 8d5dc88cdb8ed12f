"""Final errors, least-in-flight balancing and config reload, through `relaygate serve`.

Each test runs the gateway as a real process in front of local upstreams (ASGI apps on
loopback that record what reaches them) and drives it with the openai SDK or httpx.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import yaml

from tests.servers import RunningServer, relaygate_process, serve_in_thread

pytestmark = pytest.mark.gateway_process

TIMEOUT_S = 30.0
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class Upstream:
    """An OpenAI-compatible chat upstream answering ``status`` with ``error`` (or a
    completion saying its ``name``); it counts the requests that reach it, and while
    ``hold`` is clear it keeps them waiting."""

    def __init__(self, name: str, status: int = 200, error: dict[str, Any] | None = None) -> None:
        self.name = name
        self.status = status
        self.error = error
        self.calls = 0
        self.hold = threading.Event()
        self.hold.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        self.calls += 1
        while not self.hold.is_set():  # noqa: ASYNC110 - set from the test's thread
            await asyncio.sleep(0.01)
        if self.status >= 400:
            body = orjson.dumps({"error": self.error})
        else:
            body = orjson.dumps(
                {
                    "id": "c1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": self.name},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                }
            )
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def target(up: RunningServer, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai",
        "api_key": "sk-test",
        "custom_host": f"{up.url}/v1",
    }


def server_config(default: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "default_config": default,
        "telemetry": {"logs": {"level": "info", "format": "json"}},
        **extra,
    }


def write(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config))


def client(gw: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)


def ask(gw: RunningServer) -> str:
    """One chat request; the content of the answer (the upstream's name)."""
    answer = client(gw).chat.completions.create(**CHAT, timeout=TIMEOUT_S)  # type: ignore[call-overload]
    content: str = answer.choices[0].message.content
    return content


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def generation(gw: RunningServer) -> int:
    value: int = httpx.get(f"{gw.url}/ready", timeout=TIMEOUT_S).json()["config_generation"]
    return value


def sample(gw: RunningServer, line_start: str) -> float:
    text = httpx.get(f"{gw.url}/metrics", timeout=TIMEOUT_S).text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


CONTENT_FILTER = {
    "message": "The response was filtered due to the prompt triggering the content policy.",
    "type": None,
    "param": "prompt",
    "code": "content_filter",
    "innererror": {"code": "ResponsibleAIPolicyViolation"},
}
CONTEXT_LENGTH = {
    "message": "This model's maximum context length is 8192 tokens.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def fallback_gateway(
    stack: ExitStack, tmp_path: Path, primary: Upstream, secondary: Upstream
) -> RunningServer:
    up0 = stack.enter_context(serve_in_thread(primary))
    up1 = stack.enter_context(serve_in_thread(secondary))
    path = tmp_path / "relaygate.yaml"
    write(
        path,
        server_config(
            {
                "strategy": {"mode": "fallback"},
                "targets": [target(up0, "primary"), target(up1, "secondary")],
            }
        ),
    )
    return stack.enter_context(relaygate_process(path))


def test_a_content_filter_refusal_on_the_primary_is_final(stack: ExitStack, tmp_path: Path) -> None:
    primary = Upstream("primary", 400, CONTENT_FILTER)
    secondary = Upstream("secondary")
    gw = fallback_gateway(stack, tmp_path, primary, secondary)
    with pytest.raises(openai.BadRequestError) as caught:
        ask(gw)
    assert caught.value.code == "content_filter"
    assert primary.calls == 1
    assert secondary.calls == 0
    assert caught.value.response.headers["x-relaygate-route"] == "config.targets[0]:400"
    assert sample(gw, 'relaygate_final_errors_total{code="content_filter",config="default"') == 1.0


def test_a_context_length_error_on_the_primary_falls_back(stack: ExitStack, tmp_path: Path) -> None:
    primary = Upstream("primary", 400, CONTEXT_LENGTH)
    secondary = Upstream("secondary")
    gw = fallback_gateway(stack, tmp_path, primary, secondary)
    assert ask(gw) == "secondary"
    assert (primary.calls, secondary.calls) == (1, 1)


def test_least_in_flight_sends_each_new_request_to_the_idle_target(
    stack: ExitStack, tmp_path: Path
) -> None:
    a, b = Upstream("a"), Upstream("b")
    a.hold.clear()
    b.hold.clear()
    up_a = stack.enter_context(serve_in_thread(a))
    up_b = stack.enter_context(serve_in_thread(b))
    path = tmp_path / "relaygate.yaml"
    write(
        path,
        server_config(
            {
                "strategy": {"mode": "loadbalance", "balance": "least_in_flight"},
                "targets": [target(up_a, "a"), target(up_b, "b")],
            }
        ),
    )
    gw = stack.enter_context(relaygate_process(path))
    pool = stack.enter_context(ThreadPoolExecutor(6))
    pending: list[Future[str]] = []
    try:
        for n in range(1, 7):
            pending.append(pool.submit(ask, gw))
            wait_until(lambda n=n: a.calls + b.calls == n, f"request {n} upstream")  # type: ignore[misc]
            # The request just sent went to the target that had fewer in flight.
            assert abs(a.calls - b.calls) <= 1
    finally:
        a.hold.set()
        b.hold.set()
    assert sorted(f.result() for f in pending) == ["a", "a", "a", "b", "b", "b"]


@pytest.fixture
def two_upstreams(stack: ExitStack) -> tuple[Upstream, Upstream, RunningServer, RunningServer]:
    old, new = Upstream("old"), Upstream("new")
    return (
        old,
        new,
        stack.enter_context(serve_in_thread(old)),
        stack.enter_context(serve_in_thread(new)),
    )


def reload_with(
    stack: ExitStack,
    tmp_path: Path,
    ups: tuple[Upstream, Upstream, RunningServer, RunningServer],
    trigger: Callable[[RunningServer, Path], None],
    *,
    workers: int = 1,
    watch_ms: int = 0,
) -> RunningServer:
    """Start on a config routing to ``old``, hold a request there, rewrite the config to
    route to ``new`` and ``trigger`` the reload; the held request completes on ``old``."""
    old, new, up_old, up_new = ups
    path = tmp_path / "relaygate.yaml"
    extra = {"reload": {"watch_interval_ms": watch_ms}}
    write(path, server_config(target(up_old, "old"), **extra))
    gw = stack.enter_context(relaygate_process(path, workers=workers))
    assert ask(gw) == "old"
    old.hold.clear()
    pool = stack.enter_context(ThreadPoolExecutor(1))
    in_flight = pool.submit(ask, gw)
    wait_until(lambda: old.calls == 2, "the held request upstream")
    write(path, server_config(target(up_new, "new"), **extra))
    trigger(gw, path)
    try:
        wait_until(lambda: generation(gw) == 1, "the reload")
        assert ask(gw) == "new"
    finally:
        old.hold.set()
    assert in_flight.result(timeout=TIMEOUT_S) == "old"
    assert new.calls == 1
    return gw


def sighup(gw: RunningServer, _: Path) -> None:
    gw.process.send_signal(signal.SIGHUP)  # type: ignore[attr-defined]


def nothing(gw: RunningServer, _: Path) -> None:
    return None


def test_sighup_reloads_the_config_and_a_request_in_flight_finishes_on_the_old_one(
    stack: ExitStack,
    tmp_path: Path,
    two_upstreams: tuple[Upstream, Upstream, RunningServer, RunningServer],
) -> None:
    gw = reload_with(stack, tmp_path, two_upstreams, sighup)
    assert sample(gw, 'relaygate_config_reloads_total{result="ok"}') == 1.0
    assert sample(gw, "relaygate_config_generation ") == 1.0
    assert '"config_reloaded"' in gw.output()


def test_a_changed_config_file_is_reloaded_without_a_signal(
    stack: ExitStack,
    tmp_path: Path,
    two_upstreams: tuple[Upstream, Upstream, RunningServer, RunningServer],
) -> None:
    reload_with(stack, tmp_path, two_upstreams, nothing, watch_ms=50)


def test_sighup_to_the_supervisor_reloads_every_worker(
    stack: ExitStack,
    tmp_path: Path,
    two_upstreams: tuple[Upstream, Upstream, RunningServer, RunningServer],
) -> None:
    gw = reload_with(stack, tmp_path, two_upstreams, sighup, workers=2)
    # Fresh connections land on either worker: each has reloaded once, none restarted.
    assert {generation(gw) for _ in range(20)} == {1}
    assert sample(gw, 'relaygate_config_reloads_total{result="ok"}') == 2.0


def test_an_invalid_config_is_refused_with_one_log_line_and_the_old_one_stays(
    stack: ExitStack,
    tmp_path: Path,
    two_upstreams: tuple[Upstream, Upstream, RunningServer, RunningServer],
) -> None:
    _, _, up_old, _ = two_upstreams
    path = tmp_path / "relaygate.yaml"
    write(path, server_config(target(up_old, "old"), reload={"watch_interval_ms": 0}))
    gw = stack.enter_context(relaygate_process(path))
    broken = server_config(target(up_old, "old"))
    broken["default_config"]["provider"] = "opnai"
    write(path, broken)
    gw.process.send_signal(signal.SIGHUP)  # type: ignore[attr-defined]
    wait_until(lambda: '"config_reload_refused"' in gw.output(), "the refusal")
    refusals = [
        orjson.loads(line) for line in gw.output().splitlines() if '"config_reload_refused"' in line
    ]
    assert len(refusals) == 1
    assert "default_config.provider: unknown provider 'opnai'" in refusals[0]["error"]
    assert generation(gw) == 0
    assert ask(gw) == "old"
    assert sample(gw, 'relaygate_config_reloads_total{result="refused"}') == 1.0
