"""The short-request benchmark's decomposition: the floors it adds, the scenarios that measure
them, and the report section that reads where the ratio to the floor goes.

The floors are served for real (aiohttp's server and Starlette on uvicorn, in-process) against
a loopback aiohttp upstream; nothing is timed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from aiohttp import web

from benchmarks import floor_proxy
from benchmarks.harness import FLOORS, STACK_CONNECTIONS, floor_args, scenarios
from benchmarks.report import STACK_STEPS, _stack_section
from benchmarks.stack_floors import aiohttp_app, starlette_app
from benchmarks.systems import floor_system


def test_every_stack_step_is_measured_at_the_same_connection_count() -> None:
    keys = {s.key for s in scenarios(with_peers=False)}
    for name, _ in STACK_STEPS:
        assert f"{name}.single.c{STACK_CONNECTIONS}" in keys
    # Tail-sampled and telemetry-off relaygate have a row at every connection count, 64
    # included, so the tail-sampling ratio can be read there too.
    for name in ("relaygate-tail", "relaygate-off"):
        assert {f"{name}.single.c{c}" for c in (1, 16, 64)} <= keys


def test_floors_are_served_as_named() -> None:
    assert FLOORS[0] == "floor"
    assert floor_args("floor", 1)[:3] == ["-m", "uvicorn", "benchmarks.floor_proxy:app"]
    assert floor_args("floor-starlette", 1)[2] == "benchmarks.stack_floors:starlette_app"
    assert floor_args("floor-aiohttp", 9)[:4] == ["-m", "benchmarks.stack_floors", "--port", "9"]
    # Only the uvicorn floor streams; the others answer the fast and 50 ms upstreams.
    assert set(floor_system(1).requests) == {"single", "slow", "stream"}
    assert set(floor_system(1, "floor-aiohttp").requests) == {"single", "slow"}


def _agg(cpu: dict[str, float]) -> dict[str, dict[str, Any]]:
    return {f"{n}.single.c16": {"cpu_ms_per_req": v} for n, v in cpu.items()}


def test_stack_section_reads_each_step_against_the_floors_and_the_step_before() -> None:
    cpu = {
        "floor-aiohttp": 0.100,
        "floor": 0.120,
        "floor-starlette": 0.150,
        "relaygate-off": 0.240,
        "relaygate-tail": 0.300,
        "relaygate": 0.360,
    }
    lines = _stack_section(_agg(cpu))
    rows = [line for line in lines if line.startswith("| ") and "CPU ms/req" not in line]
    assert len(rows) == len(STACK_STEPS)
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0][1:5] == ["0.100", "1.00x", "0.83x", "-"]
    assert cells[3][1:5] == ["0.240", "2.40x", "2.00x", "1.60x"]
    assert cells[5][1:6] == ["0.360", "3.60x", "3.00x", "1.20x", "ok"]


def test_stack_section_marks_a_step_not_run_and_is_absent_without_steps() -> None:
    lines = _stack_section(_agg({"floor": 0.12, "relaygate": 0.36}))
    assert any("not run" in line for line in lines)
    assert _stack_section(_agg({"relaygate": 0.36})) == []


async def _upstream(request: web.Request) -> web.Response:
    sent = await request.json()
    return web.json_response({"object": "chat.completion", "echo": sent, "path": request.path})


def test_both_new_floors_forward_like_the_floor(monkeypatch: Any) -> None:
    async def run() -> list[tuple[int, dict[str, Any]]]:
        up = web.Application()
        up.router.add_post("/{tail:.*}", _upstream)
        runner = web.AppRunner(up)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        monkeypatch.setattr(floor_proxy, "UPSTREAM", f"http://127.0.0.1:{port}/fast")
        monkeypatch.setattr(floor_proxy, "UPSTREAMS", {"/slow": f"http://127.0.0.1:{port}/slow"})
        monkeypatch.setattr(floor_proxy, "_session", None)
        out = []
        floor = web.AppRunner(aiohttp_app())
        await floor.setup()
        floor_site = web.TCPSite(floor, "127.0.0.1", 0)
        await floor_site.start()
        fport = floor_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        client = floor_proxy._client()
        for path in ("/", "/slow"):
            async with client.post(f"http://127.0.0.1:{fport}{path}", data=b'{"a": 1}') as r:
                out.append((r.status, orjson.loads(await r.read())))
        await client.close()
        monkeypatch.setattr(floor_proxy, "_session", None)
        await floor.cleanup()
        transport = httpx.ASGITransport(app=starlette_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://floor") as tc:
            answer = await tc.post("/slow", content=b'{"a": 2}')
            out.append((answer.status_code, answer.json()))
        await floor_proxy._client().close()
        await runner.cleanup()
        return out

    got = asyncio.run(run())
    assert [status for status, _ in got] == [200, 200, 200]
    assert [body["path"] for _, body in got] == ["/fast", "/slow", "/slow"]
    assert [body["echo"] for _, body in got] == [{"a": 1}, {"a": 1}, {"a": 2}]


def test_the_served_comparison_configs_differ_only_in_the_telemetry_they_name() -> None:
    from benchmarks.served_ab import TELEMETRY, served_config
    from benchmarks.systems import PRODUCTION_TRACES, TAIL_SAMPLING, Upstreams
    from relaygate.config.source import server_config_of

    up = Upstreams(18080, 18081)
    compiled = {t: server_config_of(served_config(up, 8787, t, 4318)) for t in TELEMETRY}
    assert {t: c.telemetry.traces.exporter for t, c in compiled.items()} == {
        "off": "none",
        "logs": "none",
        "tail0": "otlp",
        "tail1": "otlp",
        "tail": "otlp",
        "tail-full": "otlp",
        "on": "otlp",
    }
    keep = {t: c.telemetry.traces.tail_sampling.keep_ok_ratio for t, c in compiled.items()}
    assert keep["tail"] == keep["tail-full"] == TAIL_SAMPLING["keep_ok_ratio"] < 1.0
    assert keep["tail0"] == 0.0  # no clean trace kept: what making spans costs
    assert keep["tail1"] == 0.01
    assert keep["on"] == 1.0  # every trace kept
    detail = {t: c.telemetry.traces.detail for t, c in compiled.items()}
    production = PRODUCTION_TRACES["detail"]
    assert detail == {
        "off": "off",
        "logs": "off",
        "tail0": production,
        "tail1": production,
        "tail": production,
        "tail-full": "full",
        "on": "full",
    }
    assert [c.telemetry.metrics.enabled for c in compiled.values()] == [False, *[True] * 6]
    assert [c.telemetry.logs.level for c in compiled.values()] == ["warning", *["info"] * 6]
    # The same routes in every variant: only telemetry differs.
    assert len({tuple(sorted(c.configs)) for c in compiled.values()}) == 1
