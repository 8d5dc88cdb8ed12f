"""Metric label values: which ones a series may carry, and the budget for those a caller picks.

Every label value relaygate records comes from one of three places:

- fixed sets (status class, reason, token type, operation) and the provider registry;
- the server config, the operator's word: named configs' ids, the names and paths of their
  targets and strategy nodes, the models they pin, ``telemetry.metrics.models``. These are
  label values as they are, whoever's request carries them;
- a caller: the target and strategy names and paths and the pinned models inside an inline
  ``x-portkey-config`` or a config-less ``x-portkey-provider`` call
  (:attr:`~relaygate.config.model.RoutingConfig.caller_supplied`). These go through a
  :class:`LabelBudget`.

The budget admits at most ``limit`` distinct caller-supplied values per label, each at most
``max_chars`` long, first come first served; a value once admitted keeps its own label for the
life of the process, and any other value is recorded as ``other``. The ``target`` budget
covers ``target``, ``from_target`` and ``to_target`` (the same values), the ``model`` budget
covers ``model`` and ``gen_ai_request_model``. Admitted values still multiply: a caller could
pair each of 100 admitted target names with each of 100 admitted models. So combinations of
caller-supplied values on one series (target and model; from and to target) have a budget of
the same size, and past it the second value of a new combination is recorded as ``other``;
a combination that holds ``other`` or only trusted values is free, as its count is already
bounded by the single-value budgets and the server config. Every fold into ``other`` is
reported to ``on_overflow`` with the budget's label name (``target`` or ``model``).

A model the client asks for in the request body is not budgeted: it is a label value only when
a config pins it or ``telemetry.metrics.models`` allow-lists it, else ``other``.

All of this runs on the event-loop thread that records metrics; nothing here locks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from relaygate.config.model import ROOT_PATH, Node, RoutingConfig, Strategy, Target

OTHER = "other"
"""The label value of everything a label may not carry as itself."""

TARGET = "target"
"""Budget of target labels (``target``, ``from_target``, ``to_target``)."""

MODEL = "model"
"""Budget of model labels (``model``, ``gen_ai_request_model``)."""

BUDGETS = (TARGET, MODEL)
"""Every budget's label name, the values ``on_overflow`` is called with."""

DEFAULT_MAX_CALLER_VALUES = 100
"""Distinct caller-supplied values admitted per label unless configured otherwise."""

MAX_LABEL_CHARS = 64
"""Longest caller-supplied label value admitted; a longer one is recorded as ``other``."""


def _ignore(label: str) -> None:
    return None


class LabelBudget:
    """Admits caller-supplied label values within a bound (see the module docstring).

    ``limit`` is the number of distinct values (and of distinct combinations) admitted per
    budget; ``max_chars`` the longest value admitted; ``on_overflow(label)`` is called each
    time a value is recorded as ``other`` instead of itself. Trusted values
    (:meth:`trust`) are always admitted and use none of the budget.
    """

    __slots__ = ("_admitted", "_on_overflow", "_pairs", "_trusted", "limit", "max_chars")

    def __init__(
        self,
        limit: int = DEFAULT_MAX_CALLER_VALUES,
        max_chars: int = MAX_LABEL_CHARS,
        on_overflow: Callable[[str], None] = _ignore,
    ) -> None:
        if limit < 0 or max_chars < 0:
            raise ValueError("label budgets are not negative")
        self.limit = limit
        """Distinct caller-supplied values (and combinations) admitted per budget."""
        self.max_chars = max_chars
        """Longest caller-supplied value admitted."""
        self._on_overflow = on_overflow
        self._trusted: dict[str, set[str]] = {label: {OTHER} for label in BUDGETS}
        self._admitted: dict[str, set[str]] = {label: set() for label in BUDGETS}
        self._pairs: dict[str, set[tuple[str, str]]] = {label: set() for label in BUDGETS}

    def trust(self, label: str, values: Iterable[str]) -> None:
        """Admit ``values`` for ``label`` always, outside the budget (server-config values)."""
        self._trusted[label].update(values)

    def trusted(self, label: str, value: str) -> bool:
        """Whether ``value`` is a trusted value of ``label`` (``other`` always is)."""
        return value in self._trusted[label]

    def admitted(self, label: str) -> frozenset[str]:
        """The caller-supplied values of ``label`` admitted so far (trusted ones aside)."""
        return frozenset(self._admitted[label])

    def admit(self, label: str, value: str) -> str:
        """``value`` if trusted, already admitted, or admitted now within the budget; else
        ``other`` (and the fold is reported)."""
        if value in self._trusted[label]:
            return value
        admitted = self._admitted[label]
        if value in admitted:
            return value
        if len(value) <= self.max_chars and len(admitted) < self.limit:
            admitted.add(value)
            return value
        self._on_overflow(label)
        return OTHER

    def admit_pair(self, label: str, value: str, partner_label: str, partner: str) -> str:
        """``value`` (an admitted value of ``label``) on a series that also carries
        ``partner`` (an admitted value of ``partner_label``): ``value`` if the combination is
        free or within the combinations budget of ``label``, else ``other`` (reported)."""
        if (
            value == OTHER
            or partner == OTHER
            or (value in self._trusted[label] and partner in self._trusted[partner_label])
        ):
            return value
        pairs = self._pairs[label]
        key = (partner, value)
        if key in pairs:
            return value
        if len(pairs) < self.limit:
            pairs.add(key)
            return value
        self._on_overflow(label)
        return OTHER


class LabelPolicy:
    """The label values of targets, strategy nodes and models: the one place they are chosen.

    ``models`` is the allow-list of request models (``telemetry.metrics.models``), trusted in
    the ``model`` budget; :meth:`trust_config` trusts a server config's names and models.
    Caller-supplied configs' values go through ``budget``.
    """

    __slots__ = ("_models", "budget")

    def __init__(self, budget: LabelBudget, models: Iterable[str] = ()) -> None:
        self.budget = budget
        """The budget caller-supplied values are admitted by."""
        self._models = frozenset(models)
        budget.trust(MODEL, self._models)
        # The root of every config has this path: a caller chooses nothing by it.
        budget.trust(TARGET, (ROOT_PATH,))

    def trust_config(self, config: RoutingConfig) -> None:
        """Trust the labels of a server-config config: every node's label and pinned model.

        A caller-supplied config is ignored: its values stay budgeted.
        """
        if config.caller_supplied:
            return
        budget = self.budget
        budget.trust(TARGET, _node_labels(config.root))
        budget.trust(MODEL, (m for m in (t.model for t in config.targets) if m is not None))

    def model(self, target: Target, requested: str | None, caller_supplied: bool) -> str:
        """The model label of an attempt on ``target`` for a request asking for ``requested``:
        the model the target pins (budgeted when ``caller_supplied``), an allow-listed
        request model, else ``other``."""
        model = target.model
        if model is not None:
            return self.budget.admit(MODEL, model) if caller_supplied else model
        if requested is not None and requested in self._models:
            return requested
        return OTHER

    def series(self, target: Target, model: str, caller_supplied: bool) -> tuple[str, str]:
        """``(target label, model label)`` of a series on ``target`` whose model label
        :meth:`model` gave as ``model``: the target's name, else its path, budgeted (and the
        combination with the model) when ``caller_supplied``."""
        if not caller_supplied:
            return target.label, model
        budget = self.budget
        label = budget.admit(TARGET, target.label)
        return label, budget.admit_pair(MODEL, model, TARGET, label)

    def fallback(self, src: Node, dst: Node, caller_supplied: bool) -> tuple[str, str]:
        """``(from_target, to_target)`` of a move from ``src`` to ``dst``: the nodes' labels,
        budgeted (and their combination) when ``caller_supplied``."""
        if not caller_supplied:
            return src.label, dst.label
        budget = self.budget
        frm = budget.admit(TARGET, src.label)
        to = budget.admit(TARGET, dst.label)
        return frm, budget.admit_pair(TARGET, to, TARGET, frm)


def _node_labels(node: Node) -> list[str]:
    """The labels of ``node`` and every node under it."""
    labels = [node.label]
    if isinstance(node, Strategy):
        for child in node.children:
            labels.extend(_node_labels(child))
    return labels
