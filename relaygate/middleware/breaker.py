"""The circuit gate: each upstream attempt asks its target's circuit first, then reports.

Sits between retry and log (``retry → circuit → log → timeout → provider``), so it sees
every attempt, retries included. Before an attempt it asks the target's circuit
(:class:`~relaygate.circuits.CircuitRegistry`, keyed by endpoint, shared by every config);
after it, it reports the outcome (:func:`~relaygate.strategies.breaker.outcome_of`; a
stream's once the stream has ended). An attempt the circuit refuses is not sent when a
strategy above has another child to use (``GatewayRequest.circuit_alternatives``): it is
answered at once with a ``circuit_open`` 503, recorded in the route story as ``open``, as a
span event, and counted by the fallback that follows; it costs nothing from the request's
attempt budget. Without an alternative (a lone target, all children open and tried anyway)
the attempt goes through.

The breaker in force is the target's ``cb_config`` (inherited), else the server's default
(``breaker`` section); a disabled one skips all of this.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.trace import get_current_span

from relaygate.circuits import CircuitEntry, CircuitRegistry, Origin, TransitionListener
from relaygate.config.model import BreakerSettings, Node, Target, iter_targets
from relaygate.errors import synthesized
from relaygate.exchange import AttemptRecord, GatewayRequest, GatewayResponse, ResponseStream
from relaygate.exporters import semconv as sc
from relaygate.pipeline import Handler
from relaygate.strategies import classify
from relaygate.strategies.breaker import (
    Admission,
    CircuitState,
    Outcome,
    Transition,
    outcome_of,
)
from relaygate.strategies.reasons import Reason
from relaygate.telemetry import Telemetry

__all__ = ["CircuitGate", "CircuitLayer", "circuit_telemetry"]

_OPEN = Reason.CIRCUIT_OPEN.value


class CircuitGate:
    """The circuits of one gateway as the routing layers see them.

    ``default`` is the server's default breaker (``None``: off). Used by the fallback layer
    (which children are open), the retry layer (whether a retry may go) and the
    :class:`CircuitLayer`.
    """

    def __init__(
        self, registry: CircuitRegistry, default: BreakerSettings | None, telemetry: Telemetry
    ) -> None:
        self.registry = registry
        self.default = default
        self._tel = telemetry

    def settings(self, node: Node) -> BreakerSettings | None:
        """The breaker in force at ``node``, ``None`` when off."""
        settings = node.breaker or self.default
        return settings if settings is not None and settings.enabled else None

    def quiet(self) -> bool:
        """Whether every circuit is closed (nothing to skip: the routing layers' fast path)."""
        return self.registry.unhealthy == 0

    def is_open(self, node: Node, request: GatewayRequest) -> bool:
        """Whether ``node`` would be refused now: a target whose circuit refuses attempts,
        or a strategy all of whose targets do."""
        targets = (node,) if isinstance(node, Target) else iter_targets(node)
        for target in targets:
            settings = self.settings(target)
            if settings is None:
                return False
            entry = self.registry.find(target, request.model)
            if entry is None or self.registry.admits(entry, settings):
                return False
        return True

    def state(self, target: Target) -> str | None:
        """The state of ``target``'s circuit (for a target pinning no model, the circuit of
        the model it was last reached for), ``None`` when its breaker is off or it was never
        called."""
        settings = self.settings(target)
        if settings is None:
            return None
        entry = self.registry.find(target, None) or self.registry.last_for(target)
        return entry.state(self.registry.now()).value if entry is not None else None

    def may_retry(self, request: GatewayRequest) -> bool:
        """Whether the request's target may take another attempt now (its circuit admits)."""
        target = request.target
        assert target is not None
        settings = self.settings(target)
        if settings is None:
            return True
        entry = self.registry.find(target, request.model)
        return entry is None or self.registry.admits(entry, settings)

    def skip(self, request: GatewayRequest, target: Target) -> GatewayResponse:
        """Record ``target`` as skipped for its open circuit and answer for it: the route
        story's ``open``, a span event, and a ``circuit_open`` 503 the fallback moves past."""
        request.ctx.attempts.append(
            AttemptRecord(
                target=target,
                attempt=max(request.attempt, 1),
                status=503,
                reason=_OPEN,
                duration_s=0.0,
            )
        )
        current = get_current_span()
        if current.is_recording():
            self._tel.guard(
                current.add_event,
                sc.EVENT_CIRCUIT_OPEN,
                {sc.TARGET_PATH: target.path, sc.CIRCUIT_STATE: CircuitState.OPEN.value},
            )
        response = synthesized(
            503,
            f"{target.path} skipped: its circuit breaker is open",
            type="server_error",
            code=_OPEN,
            failure=_OPEN,
        )
        response.target = target
        return response

    def reject(self, request: GatewayRequest, targets: Sequence[Target]) -> GatewayResponse:
        """The fast 503 of a strategy whose every target is open (``on_all_open: reject``):
        each is recorded as skipped, and the answer names them."""
        for target in targets:
            self.skip(request, target)
        names = ", ".join(t.path for t in targets)
        return synthesized(
            503,
            f"every target has an open circuit breaker: {names}",
            type="server_error",
            code=_OPEN,
            failure=_OPEN,
        )


class CircuitLayer:
    """Gates and reports each attempt (see the module docstring)."""

    def __init__(self, gate: CircuitGate, telemetry: Telemetry) -> None:
        self._gate = gate
        self._tel = telemetry

    def __call__(self, inner: Handler) -> Handler:
        gate = self._gate
        registry = gate.registry
        tel = self._tel

        async def circuit(request: GatewayRequest) -> GatewayResponse:
            target = request.target
            config = request.config
            assert target is not None and config is not None
            settings = gate.settings(target)
            if settings is None:
                return await inner(request)
            entry = registry.entry(target, request.model)
            if entry.origin is None:
                entry.origin = _origin(request)
            admission, moved = registry.admit(entry, settings)
            if moved or entry.circuit.state is not CircuitState.CLOSED:
                _settle(tel, registry, entry, request, moved)
            if admission is Admission.REFUSE and request.circuit_alternatives:
                request.ctx.attempts_started -= 1  # nothing was sent
                return gate.skip(request, target)
            probe = admission is Admission.PROBE
            try:
                response = await inner(request)
            except BaseException:
                moved = registry.report(entry, settings, Outcome.NEUTRAL, probe)
                _settle(tel, registry, entry, request, moved)
                raise
            stream = response.stream
            if stream is None:
                reason = classify(
                    response.status, Reason(response.failure) if response.failure else None
                )
                outcome = outcome_of(settings, response.status, reason)
                moved = registry.report(entry, settings, outcome, probe)
                if moved or entry.circuit.state is not CircuitState.CLOSED:
                    _settle(tel, registry, entry, request, moved)
                return response
            status = response.status

            def ended(stream: ResponseStream) -> None:
                if stream.failure:
                    outcome = outcome_of(settings, status, stream.failure)
                elif stream.closed_early:
                    outcome = Outcome.NEUTRAL
                else:
                    outcome = outcome_of(settings, status, classify(status).value)
                try:
                    moved = registry.report(entry, settings, outcome, probe)
                    _settle(tel, registry, entry, request, moved)
                except Exception:  # a stream's end callback never raises
                    tel.errors += 1

            stream.on_end(ended)
            return response

        return circuit


def _settle(
    tel: Telemetry,
    registry: CircuitRegistry,
    entry: CircuitEntry,
    request: GatewayRequest,
    moved: list[Transition],
) -> None:
    """Announce ``moved``; a circuit that is not closed, or just changed, is first bound to
    the request's target labels, so its gauge and transitions are reported under them
    (closed circuits that never changed cost no label work)."""
    if moved or entry.circuit.state is not CircuitState.CLOSED:
        _bind(tel, registry, entry, _origin(request))
    registry.announce(entry, moved)


def _origin(request: GatewayRequest) -> Origin:
    """Where ``request``'s attempt reaches its target's circuit (its labels are made from it)."""
    target = request.target
    config = request.config
    assert target is not None and config is not None
    return (config.id, config.caller_supplied, target, request.model, request.operation.value)


def _bind(tel: Telemetry, registry: CircuitRegistry, entry: CircuitEntry, origin: Origin) -> None:
    """Report ``entry`` under the labels of ``origin`` from now on (gauge set at once)."""
    config_id, supplied, target, requested, operation = origin
    try:
        metrics = tel.metrics
        model = metrics.model_label(target, requested, supplied)
        series = metrics.series(config_id, target, model, operation, supplied)
        if registry.bind(entry, series.labels, target.label):
            _set_state(tel, series.labels, entry.circuit.state)
    except Exception:  # telemetry never fails a request
        tel.errors += 1


def _set_state(tel: Telemetry, labels: tuple[str, ...], state: CircuitState) -> None:
    gauge = tel.metrics.circuit_state
    for each in CircuitState:
        gauge.labels(*labels, each.value).set(1.0 if each is state else 0.0)


def circuit_telemetry(tel: Telemetry, registry: CircuitRegistry) -> TransitionListener:
    """A transition listener of ``registry`` recording the state gauge, the transitions
    counter, a span event on the current span and a log line (warning when a circuit
    opens). A circuit that changes before any attempt bound it to labels (a state adopted
    from another replica) is bound to those of its first attempt, so its gauge shows the
    change at once."""

    def listener(entry: CircuitEntry, old: CircuitState, new: CircuitState) -> None:
        if not entry.bindings and entry.origin is not None:
            # Changed without an attempt here (adopted from another replica): reported
            # under the labels of its first attempt, at once.
            _bind(tel, registry, entry, entry.origin)
        try:
            for labels in entry.bindings:
                _set_state(tel, labels, new)
                tel.metrics.circuit_transitions.labels(*labels, new.value).inc()
        except Exception:  # telemetry never fails a request
            tel.errors += 1
        current = get_current_span()
        if current.is_recording():
            tel.guard(
                current.add_event,
                sc.EVENT_CIRCUIT_TRANSITION,
                {"from": old.value, "to": new.value},
            )
        log = tel.logger.warning if new is CircuitState.OPEN else tel.logger.info
        tel.guard(
            log,
            "circuit_transition",
            circuit=entry.key.describe(),
            targets=sorted(entry.labels),
            from_state=old.value,
            to_state=new.value,
        )

    return listener
