"""The drain's bookkeeping: each request is cut at most once, and only while in flight."""

from __future__ import annotations

import asyncio

from relaygate.config import parse_server_config
from relaygate.drain import ClientWatch, Drain
from relaygate.exchange import CLIENT_DISCONNECTED, GATEWAY_SHUTTING_DOWN, ClientLink


async def test_a_request_is_cut_once_for_the_first_reason() -> None:
    drain = Drain(0.01)
    task = asyncio.get_running_loop().create_task(asyncio.sleep(60))
    link = ClientLink()
    drain.enter(task, link)
    assert drain.cut(task, CLIENT_DISCONNECTED)
    assert not drain.cut(task, GATEWAY_SHUTTING_DOWN)
    assert link.cut == CLIENT_DISCONNECTED
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


async def test_an_answered_request_is_not_cut() -> None:
    drain = Drain(0.01)
    task = asyncio.get_running_loop().create_task(asyncio.sleep(60))
    link = ClientLink()
    drain.enter(task, link)
    drain.leave(task)
    drain.leave(task)
    assert drain.cut_all() == 0
    assert link.cut is None
    task.cancel()


async def test_the_drain_cuts_what_still_runs_at_its_deadline() -> None:
    drain = Drain(0.01)
    task = asyncio.get_running_loop().create_task(asyncio.sleep(60))
    link = ClientLink()
    drain.enter(task, link)
    drain.begin()
    drain.begin()  # the first call sets the deadline
    assert drain.draining
    await asyncio.gather(task, return_exceptions=True)
    assert link.cut == GATEWAY_SHUTTING_DOWN


def test_edge_limits_and_shutdown_have_safe_defaults() -> None:
    server = parse_server_config({})
    assert server.limits.header_timeout_ms == 10_000
    assert server.limits.max_header_bytes == 65_536
    assert server.limits.body_idle_timeout_ms == 30_000
    assert server.limits.max_connections == 2048
    assert server.shutdown.drain_timeout_ms == 20_000
    assert server.shutdown.telemetry_flush_timeout_ms == 3_000
    # Drain plus flush fit in Kubernetes' default 30 s grace period.
    assert server.shutdown.drain_timeout_ms + server.shutdown.telemetry_flush_timeout_ms < 30_000


async def test_a_lost_connection_cuts_only_the_request_it_still_holds() -> None:
    drain = Drain(0.01)
    loop = asyncio.get_running_loop()
    answered, running = loop.create_task(asyncio.sleep(60)), loop.create_task(asyncio.sleep(60))
    watch = ClientWatch()
    for task in (answered, running):
        drain.enter(task, ClientLink())
    watch.hold(drain, answered)
    watch.release(answered)
    assert not watch.lost(), "an answered request is not cut"
    watch.hold(drain, running)
    watch.release(answered)  # an earlier request's release leaves the current one held
    assert watch.lost()
    assert not watch.lost(), "a connection is lost once"
    await asyncio.gather(running, return_exceptions=True)
    assert running.cancelled()
    answered.cancel()
