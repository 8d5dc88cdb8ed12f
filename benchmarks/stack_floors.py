"""The floors that split relaygate's CPU per request into server stack, pipeline and telemetry.

:mod:`benchmarks.floor_proxy` is a raw ASGI pass-through on relaygate's own server stack
(uvicorn, httptools, uvloop, the pooled aiohttp client). The short-request benchmark measures
two more in the same run, so the ratio of relaygate to its floor can be read step by step:

* ``floor-aiohttp``: the same forwarding (:func:`benchmarks.floor_proxy.forward`) served by
  aiohttp's own web server on uvloop (aiohttp server + aiohttp client, no ASGI
  server): whether another server stack would be cheaper than relaygate's;
* ``floor-starlette``: the same forwarding behind Starlette's routing, ``Request`` and
  ``Response`` (what relaygate's app is built on), served by uvicorn like the floor.

Then relaygate itself with telemetry off, tail-sampled and fully on. Both serve non-streamed
requests only (``/`` the fast upstream, ``/slow`` the 50 ms one, as the floor).

Run: ``python -m benchmarks.stack_floors --port 9311`` (aiohttp's server);
``uvicorn benchmarks.stack_floors:starlette_app --port 9312 --loop uvloop --http httptools``.
"""

from __future__ import annotations

import argparse

from aiohttp import web
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from benchmarks.floor_proxy import forward


async def _starlette_proxy(request: Request) -> Response:
    status, content_type, answer = await forward(request.url.path, await request.body())
    return Response(answer, status_code=status, media_type=content_type)


starlette_app = Starlette(routes=[Route("/{path:path}", _starlette_proxy, methods=["POST"])])
"""The floor's forwarding behind Starlette routing (served by uvicorn)."""


async def _aiohttp_proxy(request: web.Request) -> web.Response:
    status, content_type, answer = await forward(request.path, await request.read())
    return web.Response(body=answer, status=status, headers={"content-type": content_type})


def aiohttp_app() -> web.Application:
    """The floor's forwarding as an aiohttp web application (any POST path)."""
    app = web.Application()
    app.router.add_post("/{path:.*}", _aiohttp_proxy)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve :func:`aiohttp_app` on loopback with uvloop, no access log."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    ns = parser.parse_args(argv)
    import uvloop

    uvloop.install()
    web.run_app(aiohttp_app(), host="127.0.0.1", port=ns.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
