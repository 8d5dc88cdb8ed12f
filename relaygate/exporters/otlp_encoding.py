"""OTLP/protobuf encoding of finished spans, written straight to the wire format.

``SpanEncoder.encode(spans)`` returns the serialized
``opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`` for a batch of
``ReadableSpan`` objects: the same message ``opentelemetry-exporter-otlp-proto-common``'s
``encode_spans(spans)`` builds, without creating a protobuf object per span, attribute and
value, and without hashing each span's ``Resource`` (a ``json.dumps`` of its attributes).

Semantics follow that encoder exactly:

* one ``ResourceSpans`` per distinct resource (``Resource`` equality), one ``ScopeSpans`` per
  distinct instrumentation scope within it, both in order of first appearance, and spans in
  input order within a scope;
* span ``flags`` carry ``SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK``, plus ``..._IS_REMOTE_MASK``
  when the parent (or a link's context) is remote; ``trace_state`` is ``"k=v,k2=v2"``; a
  link's trace state is not sent;
* attribute values: ``None`` (an empty ``AnyValue``), ``bool``, ``str``, ``int`` (int64),
  ``float`` (double), ``bytes``, sequences (``ArrayValue``) and mappings (``KeyValueList``)
  of those. An attribute whose value cannot be encoded (another type, an int outside int64,
  a string that is not valid UTF-8) is left out of the message and logged, as the library
  does; the rest of the span is still sent. Errors anywhere else (a span without a context,
  a span kind that is not a ``SpanKind``) raise.

Encoded pieces are cached: the resource and scope headers per object, and each attribute's
encoded ``KeyValue`` for ``str`` (up to 256 characters), ``int``, ``bool`` and tuple-of-``str``
(up to 16 items, 256 characters in all) values, keyed by ``(key, value, type)``; for ``float``
values, the ``KeyValue`` up to the value's eight bytes, keyed by the attribute key; span and
event names and attribute keys by value. The caches are
plain dicts, cleared when they reach their cap, so memory stays bounded whatever the traffic.
Every cached entry is a pure function of its key, so two threads racing on a cache can at
worst both compute the same bytes; ``encode`` is meant for the span processor's export
thread.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.span import DEFAULT_TRACE_STATE, SpanContext, TraceFlags, TraceState

__all__ = ["SpanEncoder"]

_logger = logging.getLogger(__name__)

KV_CACHE_SIZE: Final = 4096
"""Most ``KeyValue`` encodings (and, separately, names and keys) kept before a cache is cleared."""

HEADER_CACHE_SIZE: Final = 64
"""Most resources (and, separately, scopes) whose encoded headers are kept."""

MAX_CACHED_STR: Final = 256
"""Longest string (in characters) whose encoding is cached."""

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_UINT64_MASK: Final = (1 << 64) - 1

_DOUBLE: Final = struct.Struct("<d")
# Tag byte + fixed64: a span's start and end times in one pack.
_TIMES: Final = struct.Struct("<BQBQ")
_TIME: Final = struct.Struct("<BQ")

_ONE_BYTE: Final = tuple(bytes((i,)) for i in range(128))


def _probe_span_context() -> bool:
    """Whether ``SpanContext`` is the tuple ``(trace_id, span_id, is_remote, trace_flags,
    trace_state, is_valid)`` the fast path unpacks (its properties read those items)."""
    try:
        state = TraceState([("k", "v")])
        context = SpanContext(1, 2, True, TraceFlags(1), state)
        fields = (context.trace_id, context.span_id, context.is_remote, context.trace_flags)
        return (
            isinstance(context, tuple)
            and len(context) == 6
            and tuple(context[:4]) == fields
            and context[4] is context.trace_state is state
            and context[5] is context.is_valid
        )
    except Exception:  # an API that differs: read the properties
        return False


_CONTEXT_TUPLE: Final = _probe_span_context()


def _varint(value: int) -> bytes:
    """Encode a non-negative int as a protobuf varint (``ValueError`` if negative)."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if 0x80 <= value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)  # a negative value fails here with ValueError
    return bytes(out)


def _lp(payload: bytes) -> bytes:
    """Length-prefix ``payload`` (the body of a length-delimited field, without its tag)."""
    return _varint(len(payload)) + payload


def _tag(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

# ExportTraceServiceRequest / ResourceSpans / ScopeSpans
_T_RESOURCE_SPANS: Final = _tag(1, _LEN)
_T_RS_RESOURCE: Final = _tag(1, _LEN)
_T_RS_SCOPE_SPANS: Final = _tag(2, _LEN)
_T_RS_SCHEMA_URL: Final = _tag(3, _LEN)
_T_SS_SCOPE: Final = _tag(1, _LEN)
_T_SS_SPANS: Final = _tag(2, _LEN)
_T_SS_SCHEMA_URL: Final = _tag(3, _LEN)
# Resource / InstrumentationScope
_T_RESOURCE_ATTRIBUTES: Final = _tag(1, _LEN)
_T_SCOPE_NAME: Final = _tag(1, _LEN)
_T_SCOPE_VERSION: Final = _tag(2, _LEN)
_T_SCOPE_ATTRIBUTES: Final = _tag(3, _LEN)
# Span
_T_TRACE_ID: Final = _tag(1, _LEN)
_T_SPAN_ID: Final = _tag(2, _LEN)
_T_TRACE_STATE: Final = _tag(3, _LEN)
_T_PARENT_SPAN_ID: Final = _tag(4, _LEN)
# Tag and length of the (fixed-size) id fields.
_TRACE_ID_HEAD: Final = _T_TRACE_ID + b"\x10"
_SPAN_ID_HEAD: Final = _T_SPAN_ID + b"\x08"
_PARENT_ID_HEAD: Final = _T_PARENT_SPAN_ID + b"\x08"
_T_NAME: Final = _tag(5, _LEN)
_T_KIND: Final = _tag(6, _VARINT)
_T_START: Final = 7 << 3 | _I64
_T_END: Final = 8 << 3 | _I64
_T_ATTRIBUTES: Final = _tag(9, _LEN)
_T_DROPPED_ATTRIBUTES: Final = _tag(10, _VARINT)
_T_EVENTS: Final = _tag(11, _LEN)
_T_DROPPED_EVENTS: Final = _tag(12, _VARINT)
_T_LINKS: Final = _tag(13, _LEN)
_T_DROPPED_LINKS: Final = _tag(14, _VARINT)
_T_STATUS: Final = _tag(15, _LEN)
_T_FLAGS: Final = _tag(16, _I32)
# Span.Event
_T_EVENT_TIME: Final = 1 << 3 | _I64
_T_EVENT_NAME: Final = _tag(2, _LEN)
_T_EVENT_ATTRIBUTES: Final = _tag(3, _LEN)
_T_EVENT_DROPPED: Final = _tag(4, _VARINT)
# Span.Link
_T_LINK_TRACE_ID: Final = _tag(1, _LEN)
_T_LINK_SPAN_ID: Final = _tag(2, _LEN)
_T_LINK_ATTRIBUTES: Final = _tag(4, _LEN)
_T_LINK_DROPPED: Final = _tag(5, _VARINT)
_T_LINK_FLAGS: Final = _tag(6, _I32)
# Status
_T_STATUS_MESSAGE: Final = _tag(2, _LEN)
_T_STATUS_CODE: Final = _tag(3, _VARINT)
# KeyValue / AnyValue / ArrayValue / KeyValueList
_T_KV_KEY: Final = _tag(1, _LEN)
_T_KV_VALUE: Final = _tag(2, _LEN)
_T_STRING: Final = _tag(1, _LEN)
_T_BOOL: Final = _tag(2, _VARINT)
_T_INT: Final = _tag(3, _VARINT)
_T_DOUBLE: Final = _tag(4, _I64)
_T_ARRAY: Final = _tag(5, _LEN)
_T_KVLIST: Final = _tag(6, _LEN)
_T_BYTES: Final = _tag(7, _LEN)
_T_LIST_VALUES: Final = _tag(1, _LEN)

# trace.v1.SpanFlags
_HAS_IS_REMOTE: Final = 0x100
_IS_REMOTE: Final = 0x200
_FLAGS_LOCAL: Final = _T_FLAGS + struct.pack("<I", _HAS_IS_REMOTE)
_FLAGS_REMOTE: Final = _T_FLAGS + struct.pack("<I", _HAS_IS_REMOTE | _IS_REMOTE)
_LINK_FLAGS_LOCAL: Final = _T_LINK_FLAGS + struct.pack("<I", _HAS_IS_REMOTE)
_LINK_FLAGS_REMOTE: Final = _T_LINK_FLAGS + struct.pack("<I", _HAS_IS_REMOTE | _IS_REMOTE)

# Span.SpanKind numbers are the SDK's plus one (0 is SPAN_KIND_UNSPECIFIED).
_KIND_FIELD: Final[dict[SpanKind, bytes]] = {
    kind: _T_KIND + _varint(number)
    for kind, number in (
        (SpanKind.INTERNAL, 1),
        (SpanKind.SERVER, 2),
        (SpanKind.CLIENT, 3),
        (SpanKind.PRODUCER, 4),
        (SpanKind.CONSUMER, 5),
    )
}

_KIND_BY_ID: Final[dict[int, bytes]] = {id(kind): field for kind, field in _KIND_FIELD.items()}

_STATUS_CODE_FIELD: Final[dict[StatusCode, bytes]] = {
    code: (_T_STATUS_CODE + _varint(code.value)) if code.value else b"" for code in StatusCode
}
# The whole Status field of a span whose status has no description.
_STATUS_FIELD: Final[dict[StatusCode, bytes]] = {
    code: _T_STATUS + _lp(field) for code, field in _STATUS_CODE_FIELD.items()
}

_EMPTY_SCOPE: Final = (_T_SS_SCOPE + _lp(b""), b"")

# KeyValue.value holding a double: tag, AnyValue length (tag + 8 bytes), AnyValue.double_value tag.
_DOUBLE_VALUE: Final = _T_KV_VALUE + _varint(1 + 8) + _T_DOUBLE

_NOTHING: Final = object()


def _probe_sdk_containers() -> tuple[bool, bool, bool]:
    """Whether this SDK stores what the fast paths read: a ``ReadableSpan``'s constructor
    arguments as ``_<name>`` attributes, a ``BoundedAttributes``' items in a dict ``_dict`` and a
    ``BoundedList``'s items in a deque ``_dq``. Any surprise turns a fast path off."""
    try:
        attributes = BoundedAttributes(attributes={"k": "v"})
        event = Event("e")
        events: BoundedList[Event] = BoundedList(None)
        links: BoundedList[Link] = BoundedList(None)
        events.append(event)
        fields: dict[str, Any] = {
            "name": "probe",
            "context": SpanContext(1, 2, False),
            "parent": SpanContext(1, 3, True),
            "kind": SpanKind.SERVER,
            "status": Status(StatusCode.ERROR, "probe"),
            "start_time": 4,
            "end_time": 5,
            "attributes": attributes,
            "events": events,
            "links": links,
        }
        span = ReadableSpan(**fields)
        direct = all(getattr(span, f"_{field}", None) is value for field, value in fields.items())
        inner = getattr(attributes, "_dict", None)
        attributes_direct = type(inner) is dict and inner == {"k": "v"}
        queue = getattr(events, "_dq", None)
        list_direct = type(queue) is deque and list(queue) == [event] == list(events)
    except Exception:  # an SDK that differs: use the public accessors only
        return False, False, False
    return direct, attributes_direct, list_direct


_DIRECT, _BOUNDED_ATTRIBUTES_DIRECT, _BOUNDED_LIST_DIRECT = _probe_sdk_containers()


def _dropped_attributes(attributes: Any) -> int:
    """Attributes a span or event dropped: a ``BoundedAttributes``' count, else 0."""
    if type(attributes) is dict or attributes is None:
        return 0
    return attributes.dropped if isinstance(attributes, BoundedAttributes) else 0


def _list_items(items: Any) -> tuple[Any, int]:
    """A span's events or links as a sequence to iterate, and how many it dropped (a
    ``BoundedList``'s deque read directly: its public iteration locks and copies)."""
    kind_of = type(items)
    if kind_of is list or kind_of is tuple or not isinstance(items, BoundedList):
        return items, 0
    dropped: int = items.dropped
    if kind_of is BoundedList and _BOUNDED_LIST_DIRECT:
        stored: Any = items
        return stored._dq, dropped
    return items, dropped


def _utf8(text: Any) -> bytes:
    """A string field's bytes: ``str`` as UTF-8; ``bytes`` that are valid UTF-8 pass as is."""
    if isinstance(text, str):
        return text.encode()
    if isinstance(text, bytes):
        text.decode()  # UnicodeDecodeError, as protobuf raises for invalid UTF-8
        return bytes(text)
    raise TypeError(f"bad argument type for a string field: {type(text)}")


def _any_value(value: Any) -> bytes:
    """The body of an ``AnyValue`` for ``value``, dispatching on type like the OTLP encoder."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _T_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _T_STRING + _lp(value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"Value out of range: {value}")
        return _T_INT + _varint(value & _UINT64_MASK)
    if isinstance(value, float):
        return _T_DOUBLE + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _T_BYTES + _lp(value)
    if isinstance(value, Sequence):
        items = b"".join([_T_LIST_VALUES + _lp(_any_value(item)) for item in value])
        return _T_ARRAY + _lp(items)
    if isinstance(value, Mapping):
        pairs = b"".join([_T_LIST_VALUES + _key_value(str(k), v) for k, v in value.items()])
        return _T_KVLIST + _lp(pairs)
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: Any, value: Any) -> bytes:
    """A length-prefixed ``KeyValue`` body (the caller adds the field tag)."""
    body = _T_KV_VALUE + _lp(_any_value(value))
    encoded_key = b"" if key is None else _utf8(key)
    if encoded_key:  # proto3: an empty (or unset) key is not serialized
        body = _T_KV_KEY + _lp(encoded_key) + body
    return _lp(body)


def _str_tuple(value: Any) -> bool:
    """Whether ``value`` is a tuple of (at most 16) exact ``str`` items: an attribute value
    whose encoding can be cached, since such a tuple equals no tuple of other items."""
    if type(value) is not tuple or len(value) > 16:
        return False
    return all(type(item) is str for item in value)


def _cacheable(value: Any, kind: type) -> bool:
    """Whether a ``str``, ``int``, ``bool`` or str-tuple value's ``KeyValue`` is kept: any
    but strings (or tuples of them) longer than ``MAX_CACHED_STR`` characters in all."""
    if kind is str:
        return len(value) <= MAX_CACHED_STR
    if kind is tuple:
        return sum(map(len, value)) <= MAX_CACHED_STR
    return True


def _trace_state(context: SpanContext) -> bytes:
    trace_state = context.trace_state
    if not trace_state:
        return b""
    text = ",".join([f"{key}={value}" for key, value in trace_state.items()])
    return _T_TRACE_STATE + _lp(text.encode()) if text else b""


class SpanEncoder:
    """Encodes batches of finished spans as an OTLP ``ExportTraceServiceRequest``.

    One instance keeps its caches across batches; use one per exporter. All caches are
    bounded (``KV_CACHE_SIZE``, ``HEADER_CACHE_SIZE``) and hold only encoded bytes plus the
    resource and scope objects they were computed from.
    """

    def __init__(self, kv_cache_size: int = KV_CACHE_SIZE) -> None:
        """Create an encoder whose value caches hold at most ``kv_cache_size`` entries each."""
        self._kv_cap = max(1, kv_cache_size)
        self._kv_cache: dict[tuple[str, object, type], bytes] = {}
        self._str_cache: dict[str, bytes] = {}
        # Per attribute key: a double-valued KeyValue up to its eight value bytes.
        self._float_prefix: dict[str, bytes] = {}
        self._resources: dict[int, tuple[Resource, bytes, bytes]] = {}
        self._scopes: dict[int, tuple[InstrumentationScope, bytes, bytes]] = {}
        # The last span status seen and its encoding: spans mostly share one Status object.
        self._last_status: tuple[object, bytes] = (_NOTHING, b"")

    # -- public ---------------------------------------------------------------------------

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """Serialize ``spans`` as an ``ExportTraceServiceRequest`` (``b""`` for no spans).

        Grouping, field values and field presence match ``encode_spans(spans)`` from
        ``opentelemetry.exporter.otlp.proto.common.trace_encoder``.
        """
        # (resource, {scope: [length-prefixed span bodies]}) in order of first appearance.
        groups: list[tuple[Resource, dict[InstrumentationScope | None, list[bytes]]]] = []
        by_id: dict[int, dict[InstrumentationScope | None, list[bytes]]] = {}
        by_value: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] | None = None
        last_resource: object = _NOTHING
        last_scope: object = _NOTHING
        last_spans: list[bytes] = []
        encode_span = self._span
        for span in spans:
            if _DIRECT and type(span) is ReadableSpan:
                resource, scope = span._resource, span._instrumentation_scope or None
            else:
                resource, scope = span.resource, span.instrumentation_scope or None
            encoded = encode_span(span)
            if resource is last_resource and scope is last_scope:
                last_spans.append(encoded)
                continue
            scopes = by_id.get(id(resource))
            if scopes is None:
                # A resource object not seen in this batch: group it with an equal one
                # (equal resources share one ResourceSpans, as with a dict keyed by them).
                if groups and by_value is None:
                    by_value = dict(groups)
                found = by_value.get(resource) if by_value is not None else None
                if found is None:
                    scopes = {}
                    groups.append((resource, scopes))
                    if by_value is not None:
                        by_value[resource] = scopes
                else:
                    scopes = found
                by_id[id(resource)] = scopes
            scope_spans = scopes.get(scope)
            if scope_spans is None:
                scope_spans = scopes[scope] = []
            scope_spans.append(encoded)
            last_resource, last_scope, last_spans = resource, scope, scope_spans

        out: list[bytes] = []
        for resource, scopes in groups:
            resource_field, resource_tail = self._resource_parts(resource)
            parts = [resource_field]
            for scope, bodies in scopes.items():
                scope_field, scope_tail = self._scope_parts(scope)
                scope_spans_body = b"".join(
                    (scope_field, _T_SS_SPANS, _T_SS_SPANS.join(bodies), scope_tail)
                )
                parts.append(_T_RS_SCOPE_SPANS)
                parts.append(_lp(scope_spans_body))
            parts.append(resource_tail)
            out.append(_T_RESOURCE_SPANS)
            out.append(_lp(b"".join(parts)))
        return b"".join(out)

    # -- spans ----------------------------------------------------------------------------

    def _span(self, span: ReadableSpan) -> bytes:
        """A length-prefixed ``Span`` body."""
        attributes: Any
        events: Any
        links: Any
        if _DIRECT and type(span) is ReadableSpan:
            # Fields as stored: the public properties are calls, and those for the containers
            # wrap or copy them.
            context, parent, name, kind = span._context, span._parent, span._name, span._kind
            start, end, status = span._start_time, span._end_time, span._status
            attributes, events, links = span._attributes, span._events, span._links
            # Dropped counts as ReadableSpan's properties compute them; _attributes unwraps
            # a BoundedAttributes itself.
            dropped_attributes = 0 if type(attributes) is dict else _dropped_attributes(attributes)
            # relaygate's own spans: events a list, links a tuple, nothing dropped.
            if type(events) is list:
                dropped_events = 0
            else:
                events, dropped_events = _list_items(events)
            if type(links) is tuple:
                dropped_links = 0
            else:
                links, dropped_links = _list_items(links)
        else:
            context, parent, name, kind = span.get_span_context(), span.parent, span.name, span.kind
            start, end, status = span.start_time, span.end_time, span.status
            attributes, events, links = span.attributes, span.events, span.links
            dropped_attributes = span.dropped_attributes
            dropped_events = span.dropped_events
            dropped_links = span.dropped_links
        if type(context) is SpanContext and _CONTEXT_TUPLE:
            # The context's fields unpacked at once: each property is a Python call.
            trace_id, span_id, _, _, trace_state, _ = context
        elif context is None:
            raise ValueError(f"span {name!r} has no span context")
        else:
            trace_id, span_id = context.trace_id, context.span_id
            trace_state = context.trace_state
        parts = [
            _TRACE_ID_HEAD,
            trace_id.to_bytes(16, "big"),
            _SPAN_ID_HEAD,
            span_id.to_bytes(8, "big"),
        ]
        append = parts.append
        if trace_state is not DEFAULT_TRACE_STATE and trace_state:
            append(_trace_state(context))
        parent_remote = False
        if parent:
            if type(parent) is SpanContext and _CONTEXT_TUPLE:
                parent_id, parent_remote = parent[1], parent[2]
            else:
                parent_id, parent_remote = parent.span_id, parent.is_remote
            append(_PARENT_ID_HEAD)
            append(parent_id.to_bytes(8, "big"))
        if name:
            encoded = self._str_cache.get(name) if type(name) is str else None
            append(_T_NAME)
            append(self._string(name) if encoded is None else encoded)
        kind_field = _KIND_BY_ID.get(id(kind))
        append(_KIND_FIELD[kind] if kind_field is None else kind_field)
        try:
            if start and end:
                append(_TIMES.pack(_T_START, start, _T_END, end))
            elif start:
                append(_TIME.pack(_T_START, start))
            elif end:
                append(_TIME.pack(_T_END, end))
        except struct.error as error:
            raise ValueError(f"span time out of range: {start}, {end}") from error
        if attributes:
            append(self._attributes(attributes, _T_ATTRIBUTES))
        if dropped_attributes:
            append(_T_DROPPED_ATTRIBUTES + _varint(dropped_attributes))
        if events:
            for event in events:
                append(_T_EVENTS)
                append(self._event(event))
        if dropped_events:
            append(_T_DROPPED_EVENTS + _varint(dropped_events))
        if links:
            for link in links:
                append(_T_LINKS)
                append(self._link(link))
        if dropped_links:
            append(_T_DROPPED_LINKS + _varint(dropped_links))
        if status is not None:
            last = self._last_status
            if last[0] is status:
                append(last[1])
            else:
                status_field = self._status(status)
                self._last_status = (status, status_field)
                append(status_field)
        append(_FLAGS_REMOTE if parent_remote else _FLAGS_LOCAL)
        body = b"".join(parts)
        size = len(body)
        if 0x80 <= size < 0x4000:  # most spans: a two-byte length, without a call
            return bytes(((size & 0x7F) | 0x80, size >> 7)) + body
        return _varint(size) + body

    @staticmethod
    def _status(status: Status) -> bytes:
        """The ``Span.status`` field."""
        code = status.status_code
        description = status.description
        if not description:
            status_field = _STATUS_FIELD.get(code)
            if status_field is not None:
                return status_field
        code_field = _STATUS_CODE_FIELD.get(code)
        if code_field is None:
            code_field = _T_STATUS_CODE + _varint(code.value) if code.value else b""
        message = _T_STATUS_MESSAGE + _lp(_utf8(description)) if description else b""
        return _T_STATUS + _lp(message + code_field)

    def _event(self, event: Event) -> bytes:
        """A length-prefixed ``Span.Event`` body."""
        parts: list[bytes] = []
        timestamp = event.timestamp
        if timestamp:
            parts.append(_TIME.pack(_T_EVENT_TIME, timestamp))
        name = event.name
        if name:
            encoded = self._str_cache.get(name) if type(name) is str else None
            parts.append(_T_EVENT_NAME)
            parts.append(self._string(name) if encoded is None else encoded)
        attributes: Any = event.attributes
        # Event.dropped_attributes computed the same way, unless a subclass overrides it.
        dropped = (
            _dropped_attributes(attributes) if type(event) is Event else event.dropped_attributes
        )
        if attributes:
            parts.append(self._attributes(attributes, _T_EVENT_ATTRIBUTES))
        if dropped:
            parts.append(_T_EVENT_DROPPED + _varint(dropped))
        return _lp(b"".join(parts))

    def _link(self, link: Link) -> bytes:
        """A length-prefixed ``Span.Link`` body (no trace_state, like the OTLP encoder)."""
        context = link.context
        parts = [
            _T_LINK_TRACE_ID,
            b"\x10",
            context.trace_id.to_bytes(16, "big"),
            _T_LINK_SPAN_ID,
            b"\x08",
            context.span_id.to_bytes(8, "big"),
        ]
        attributes = link.attributes
        if attributes:
            parts.append(self._attributes(attributes, _T_LINK_ATTRIBUTES))
        dropped = link.dropped_attributes
        if dropped:
            parts.append(_T_LINK_DROPPED + _varint(dropped))
        parts.append(_LINK_FLAGS_REMOTE if context and context.is_remote else _LINK_FLAGS_LOCAL)
        return _lp(b"".join(parts))

    # -- attributes and strings -----------------------------------------------------------

    def _attributes(self, attributes: Mapping[str, Any], tag: bytes) -> bytes:
        """Repeated ``KeyValue`` fields with ``tag``; values that cannot be encoded are logged
        and left out, as the OTLP encoder does."""
        if type(attributes) is BoundedAttributes and _BOUNDED_ATTRIBUTES_DIRECT:
            # Same items in the same order as its (locking, copying) public iteration.
            attributes = attributes._dict
        get = self._kv_cache.get
        float_prefix = self._float_prefix.get
        encoded: list[bytes] = []
        append = encoded.append
        for key, value in attributes.items():
            kind = type(value)
            if kind is float:
                # A double's KeyValue is a per-key prefix and the value's eight bytes.
                prefix = float_prefix(key)
                if prefix is not None:
                    append(prefix + _DOUBLE.pack(value))
                    continue
                kv = None
            else:
                # Only str/int/bool values and tuples of str under str keys are ever stored;
                # the exact type is part of the key so that True and 1 (equal, same hash)
                # stay apart.
                try:
                    kv = get((key, value, kind))
                except Exception:  # an unhashable value (a list, a dict)
                    kv = None
            if kv is None:
                kv = self._key_value_miss(key, value)
                if kv is None:
                    continue
            append(kv)
        if not encoded:
            return b""
        return tag + tag.join(encoded)

    def _key_value_miss(self, key: Any, value: Any) -> bytes | None:
        """A length-prefixed ``KeyValue`` not found in the cache, cached when cacheable;
        ``None`` (and the error logged) when the value cannot be encoded."""
        kind = type(value)
        try:
            if type(key) is str and key:
                if kind is float:
                    body = b"".join((_T_KV_KEY, self._string(key), _DOUBLE_VALUE))
                    prefix = _varint(len(body) + 8) + body
                    if len(key) <= MAX_CACHED_STR:
                        floats = self._float_prefix
                        if len(floats) >= self._kv_cap:
                            floats.clear()
                        floats[key] = prefix
                    return prefix + _DOUBLE.pack(value)
                if kind is str or kind is int or kind is bool or _str_tuple(value):
                    kv = _lp(
                        b"".join(
                            (_T_KV_KEY, self._string(key), _T_KV_VALUE, _lp(_any_value(value)))
                        )
                    )
                    if _cacheable(value, kind):
                        cache = self._kv_cache
                        if len(cache) >= self._kv_cap:
                            cache.clear()
                        cache[(key, value, kind)] = kv
                    return kv
            return _key_value(key, value)
        except Exception as error:
            _logger.exception("Failed to encode key %s: %s", key, error)
            return None

    def _string(self, text: str) -> bytes:
        """A length-prefixed UTF-8 string, cached for short ``str`` values."""
        encoded = self._str_cache.get(text) if type(text) is str else None
        if encoded is None:
            encoded = _lp(_utf8(text))
            if type(text) is str and len(text) <= MAX_CACHED_STR:
                if len(self._str_cache) >= self._kv_cap:
                    self._str_cache.clear()
                self._str_cache[text] = encoded
        return encoded

    # -- resource and scope headers -------------------------------------------------------

    def _resource_parts(self, resource: Resource) -> tuple[bytes, bytes]:
        """The ``ResourceSpans.resource`` field and the ``schema_url`` field, cached."""
        cached = self._resources.get(id(resource))
        if cached is not None and cached[0] is resource:
            return cached[1], cached[2]
        attributes = resource.attributes
        body = self._attributes(attributes, _T_RESOURCE_ATTRIBUTES) if attributes else b""
        field = _T_RS_RESOURCE + _lp(body)
        schema_url = resource.schema_url
        tail = _T_RS_SCHEMA_URL + _lp(_utf8(schema_url)) if schema_url else b""
        if len(self._resources) >= HEADER_CACHE_SIZE:
            self._resources.clear()
        self._resources[id(resource)] = (resource, field, tail)
        return field, tail

    def _scope_parts(self, scope: InstrumentationScope | None) -> tuple[bytes, bytes]:
        """The ``ScopeSpans.scope`` field and the ``schema_url`` field, cached."""
        if scope is None:
            return _EMPTY_SCOPE
        cached = self._scopes.get(id(scope))
        if cached is not None and cached[0] is scope:
            return cached[1], cached[2]
        parts: list[bytes] = []
        if scope.name:
            parts.append(_T_SCOPE_NAME + _lp(_utf8(scope.name)))
        if scope.version:
            parts.append(_T_SCOPE_VERSION + _lp(_utf8(scope.version)))
        attributes = scope.attributes
        if attributes:
            parts.append(self._attributes(attributes, _T_SCOPE_ATTRIBUTES))
        field = _T_SS_SCOPE + _lp(b"".join(parts))
        schema_url = scope.schema_url
        tail = _T_SS_SCHEMA_URL + _lp(_utf8(schema_url)) if schema_url else b""
        if len(self._scopes) >= HEADER_CACHE_SIZE:
            self._scopes.clear()
        self._scopes[id(scope)] = (scope, field, tail)
        return field, tail
