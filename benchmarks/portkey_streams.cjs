// Preloaded into Portkey's gateway (node -r) by benchmarks/peers.py so its streamed answers work.
//
// Portkey (1.15, on @hono/node-server) passes an upstream's event stream on as
// `new Response(stream, upstreamResponse)`; hono's Response class then keeps the fetch
// response's own Headers object, whose guard is "immutable", and Portkey's header update
// (x-portkey-* headers) throws "TypeError: immutable": every streamed request answers 500.
// This wraps fetch so an event-stream response carries a mutable copy of its headers; other
// responses are returned untouched, so the short-request figures are not affected.
"use strict";

const fetchImpl = globalThis.fetch;
const FetchResponse = globalThis.Response;

globalThis.fetch = async function fetch(input, init) {
  const res = await fetchImpl(input, init);
  const type = res.headers.get("content-type");
  if (type === null || !type.startsWith("text/event-stream")) return res;
  return new FetchResponse(res.body, {
    status: res.status,
    statusText: res.statusText,
    headers: new Headers(res.headers),
  });
};
