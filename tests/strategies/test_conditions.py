"""Decision tables for conditional-routing query evaluation and load-time validation."""

from __future__ import annotations

from typing import Any

import pytest

from relaygate.strategies import matches, validate_query

DOC: dict[str, Any] = {
    "metadata": {
        "user_plan": "paid",
        "region": "eu",
        "tier": 3,
        "score": 0.75,
        "beta": True,
        "tags": ["a", "b"],
        "nothing": None,
    },
    "params": {
        "model": "gpt-4o",
        "max_tokens": 512,
        "stream": False,
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "Hello there"},
        ],
    },
}


def run(cases: list[tuple[str, dict[str, Any], bool]]) -> pytest.MarkDecorator:
    """Parametrize (query, expected) from (id, query, expected) rows."""
    return pytest.mark.parametrize(
        ("query", "expected"), [(q, e) for _, q, e in cases], ids=[i for i, _, _ in cases]
    )


@run(
    [
        ("literal-match", {"metadata.user_plan": "paid"}, True),
        ("literal-mismatch", {"metadata.user_plan": "free"}, False),
        ("eq-match", {"metadata.user_plan": {"$eq": "paid"}}, True),
        ("eq-mismatch", {"metadata.user_plan": {"$eq": "free"}}, False),
        ("eq-int-vs-float", {"metadata.tier": {"$eq": 3.0}}, True),
        ("eq-string-vs-number", {"metadata.tier": {"$eq": "3"}}, False),
        ("eq-null", {"metadata.nothing": None}, True),
        ("eq-list-literal", {"metadata.tags": ["a", "b"]}, True),
        ("eq-list-order-matters", {"metadata.tags": ["b", "a"]}, False),
        (
            "eq-dict-literal-without-operators",
            {"params.messages.0": {"role": "system", "content": "be brief"}},
            True,
        ),
        ("ne-match", {"metadata.user_plan": {"$ne": "free"}}, True),
        ("ne-mismatch", {"metadata.user_plan": {"$ne": "paid"}}, False),
        ("ne-other-type", {"metadata.tier": {"$ne": "3"}}, True),
    ]
)
def test_equality_operators(query: dict[str, Any], expected: bool) -> None:
    assert matches(query, DOC) is expected


@run(
    [
        ("gt-true", {"params.max_tokens": {"$gt": 100}}, True),
        ("gt-equal-false", {"params.max_tokens": {"$gt": 512}}, False),
        ("gte-equal-true", {"params.max_tokens": {"$gte": 512}}, True),
        ("gte-false", {"params.max_tokens": {"$gte": 513}}, False),
        ("lt-true", {"metadata.score": {"$lt": 1}}, True),
        ("lt-equal-false", {"metadata.score": {"$lt": 0.75}}, False),
        ("lte-equal-true", {"metadata.score": {"$lte": 0.75}}, True),
        ("lte-false", {"metadata.score": {"$lte": 0.5}}, False),
        ("range-and-inside", {"params.max_tokens": {"$gt": 100, "$lt": 1000}}, True),
        ("range-and-outside", {"params.max_tokens": {"$gt": 100, "$lt": 200}}, False),
        ("strings-compare-lexically", {"params.model": {"$gt": "gpt-3"}}, True),
        ("string-vs-number-no-match", {"params.model": {"$gt": 1}}, False),
        ("numeric-string-is-not-a-number", {"metadata.tier": {"$lt": "5"}}, False),
        ("list-vs-number-no-match", {"metadata.tags": {"$gte": 0}}, False),
        ("null-vs-number-no-match", {"metadata.nothing": {"$lte": 0}}, False),
        ("nan-operand-no-match", {"metadata.tier": {"$lt": float("nan")}}, False),
    ]
)
def test_ordering_operators(query: dict[str, Any], expected: bool) -> None:
    assert matches(query, DOC) is expected


@run(
    [
        ("bool-literal-true", {"metadata.beta": True}, True),
        ("bool-not-equal-one", {"metadata.beta": 1}, False),
        ("bool-eq-one-no-match", {"metadata.beta": {"$eq": 1}}, False),
        ("false-not-equal-zero", {"params.stream": {"$eq": 0}}, False),
        ("false-literal", {"params.stream": False}, True),
        ("bool-ne-one", {"metadata.beta": {"$ne": 1}}, True),
        ("bool-gt-zero-no-match", {"metadata.beta": {"$gt": 0}}, False),
        ("number-lt-true-no-match", {"metadata.tier": {"$lt": True}}, False),
        ("bool-in-numbers-no-match", {"metadata.beta": {"$in": [1, 2]}}, False),
        ("one-in-bools-no-match", {"params.max_tokens": {"$in": [True]}}, False),
        ("bool-in-bools", {"metadata.beta": {"$in": [True]}}, True),
        ("bool-nin-numbers", {"metadata.beta": {"$nin": [1]}}, True),
    ]
)
def test_bool_is_not_a_number(query: dict[str, Any], expected: bool) -> None:
    assert matches(query, DOC) is expected


@run(
    [
        ("in-match", {"metadata.region": {"$in": ["us", "eu"]}}, True),
        ("in-mismatch", {"metadata.region": {"$in": ["us", "ap"]}}, False),
        ("in-empty-list", {"metadata.region": {"$in": []}}, False),
        ("in-number-vs-float", {"metadata.tier": {"$in": [3.0]}}, True),
        ("in-not-a-list", {"metadata.region": {"$in": "eu"}}, False),
        ("nin-match", {"metadata.region": {"$nin": ["us", "ap"]}}, True),
        ("nin-mismatch", {"metadata.region": {"$nin": ["eu"]}}, False),
        ("nin-empty-list", {"metadata.region": {"$nin": []}}, True),
        ("nin-not-a-list", {"metadata.region": {"$nin": "us"}}, False),
    ]
)
def test_membership_operators(query: dict[str, Any], expected: bool) -> None:
    assert matches(query, DOC) is expected


@run(
    [
        ("regex-search-anywhere", {"params.model": {"$regex": "4o"}}, True),
        ("regex-anchored", {"params.model": {"$regex": "^gpt-4"}}, True),
        ("regex-anchored-miss", {"params.model": {"$regex": "^claude"}}, False),
        ("regex-case-sensitive", {"params.model": {"$regex": "GPT"}}, False),
        ("regex-inline-flag", {"params.model": {"$regex": "(?i)GPT"}}, True),
        ("regex-invalid-no-match", {"params.model": {"$regex": "gpt-("}}, False),
        ("regex-on-number-no-match", {"metadata.tier": {"$regex": "3"}}, False),
        ("regex-non-string-pattern", {"params.model": {"$regex": 4}}, False),
    ]
)
def test_regex_operator(query: dict[str, Any], expected: bool) -> None:
    assert matches(query, DOC) is expected


@run(
    [
        ("missing-literal", {"metadata.absent": "x"}, False),
        ("missing-eq-null", {"metadata.absent": {"$eq": None}}, False),
        ("missing-ne", {"metadata.absent": {"$ne": "x"}}, True),
        ("missing-nin", {"metadata.absent": {"$nin": ["x"]}}, True),
        ("missing-in", {"metadata.absent": {"$in": ["x"]}}, False),
        ("missing-gt", {"metadata.absent": {"$gt": 0}}, False),
        ("missing-gte", {"metadata.absent": {"$gte": 0}}, False),
        ("missing-lt", {"metadata.absent": {"$lt": 0}}, False),
        ("missing-lte", {"metadata.absent": {"$lte": 0}}, False),
        ("missing-regex", {"metadata.absent": {"$regex": ".*"}}, False),
        ("missing-root", {"headers.x": {"$ne": "y"}}, True),
        ("through-scalar", {"params.model.name": {"$eq": "x"}}, False),
        ("present-null-is-not-missing", {"metadata.nothing": {"$ne": None}}, False),
    ]
)
def test_missing_path(query: dict[str, Any], expected: bool) -> None:
    assert matches(query, DOC) is expected


@run(
    [
        ("index-first", {"params.messages.0.role": "system"}, True),
        ("index-second", {"params.messages.1.role": {"$eq": "user"}}, True),
        ("index-content-regex", {"params.messages.1.content": {"$regex": "^Hello"}}, True),
        ("index-out-of-range", {"params.messages.5.role": "user"}, False),
        ("index-out-of-range-ne", {"params.messages.5.role": {"$ne": "user"}}, True),
        ("negative-index-missing", {"params.messages.-1.role": "user"}, False),
        ("non-numeric-part-on-list", {"params.messages.first.role": "system"}, False),
        ("index-into-metadata-list", {"metadata.tags.1": "b"}, True),
    ]
)
def test_list_index_path(query: dict[str, Any], expected: bool) -> None:
    assert matches(query, DOC) is expected


@run(
    [
        ("empty-query", {}, True),
        ("keys-anded-all-true", {"metadata.user_plan": "paid", "params.model": "gpt-4o"}, True),
        ("keys-anded-one-false", {"metadata.user_plan": "paid", "params.model": "o1"}, False),
        ("and-all", {"$and": [{"metadata.region": "eu"}, {"metadata.tier": {"$gte": 3}}]}, True),
        ("and-one-false", {"$and": [{"metadata.region": "eu"}, {"metadata.tier": 1}]}, False),
        ("and-empty", {"$and": []}, True),
        ("or-one-true", {"$or": [{"metadata.region": "us"}, {"metadata.tier": 3}]}, True),
        ("or-none-true", {"$or": [{"metadata.region": "us"}, {"metadata.tier": 1}]}, False),
        ("or-empty", {"$or": []}, False),
        (
            "or-anded-with-sibling-key",
            {"$or": [{"metadata.region": "eu"}], "params.model": "o1"},
            False,
        ),
        (
            "nested-or-in-and",
            {
                "$and": [
                    {"$or": [{"metadata.user_plan": "free"}, {"metadata.beta": True}]},
                    {"params.max_tokens": {"$lte": 1024}},
                ]
            },
            True,
        ),
        (
            "nested-and-in-or",
            {
                "$or": [
                    {"$and": [{"metadata.region": "eu"}, {"params.model": "o1"}]},
                    {"$and": [{"metadata.region": "us"}, {"params.model": "gpt-4o"}]},
                ]
            },
            False,
        ),
        ("and-not-a-list", {"$and": {"metadata.region": "eu"}}, False),
        ("or-with-non-object", {"$or": ["metadata.region"]}, False),
        ("unknown-logical-operator", {"$nor": [{"metadata.region": "us"}]}, False),
        ("unknown-comparison-operator", {"metadata.region": {"$like": "eu"}}, False),
        ("mixed-operator-and-field", {"metadata.region": {"$eq": "eu", "x": 1}}, False),
    ]
)
def test_logical_composition(query: dict[str, Any], expected: bool) -> None:
    assert matches(query, DOC) is expected


def test_matches_never_raises_on_non_mapping_query() -> None:
    assert matches([], DOC) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"metadata.user_plan": "paid"},
        {"params.model": {"$in": ["a", "b"], "$ne": "c"}},
        {"params.messages.0.role": {"$regex": "^sys"}},
        {"$or": [{"metadata.a": 1}, {"$and": [{"params.b": {"$gte": 2}}]}]},
        {"metadata.x": {"$eq": 1, "$ne": 2, "$gt": 0, "$gte": 0, "$lt": 9, "$lte": 9}},
        {"metadata.x": {"$nin": []}},
        {"params.messages.0": {"role": "system"}},
    ],
    ids=[
        "empty",
        "literal",
        "operators",
        "regex",
        "nested-logic",
        "all-comparisons",
        "empty-nin",
        "dict-literal",
    ],
)
def test_validate_accepts_well_formed_query(query: dict[str, Any]) -> None:
    assert validate_query(query, "q") == []


@pytest.mark.parametrize(
    ("query", "error_path", "fragment"),
    [
        ("metadata.x", "q", "must be an object"),
        ({"metadata.x": {"$foo": 1}}, "q.metadata.x.$foo", "unknown operator"),
        ({"$nor": []}, "q.$nor", "unknown logical operator"),
        ({"$and": {"metadata.x": 1}}, "q.$and", "takes a list"),
        ({"$or": "x"}, "q.$or", "takes a list"),
        ({"$or": [{"metadata.a": 1}, 3]}, "q.$or[1]", "must be an object"),
        (
            {"$and": [{"$or": [{"metadata.a": {"$bad": 1}}]}]},
            "q.$and[0].$or[0].metadata.a.$bad",
            "unknown operator",
        ),
        ({"metadata.x": {"$in": "a"}}, "q.metadata.x.$in", "takes a list"),
        ({"metadata.x": {"$nin": 5}}, "q.metadata.x.$nin", "takes a list"),
        ({"metadata.x": {"$regex": 5}}, "q.metadata.x.$regex", "takes a string"),
        ({"metadata.x": {"$regex": "a("}}, "q.metadata.x.$regex", "not a valid"),
        ({"user_plan": "paid"}, "q.user_plan", "must start with"),
        ({"headers.x": "y"}, "q.headers.x", "must start with"),
        ({"metadata.": "y"}, "q.metadata.", "must start with"),
        ({"metadata.x": {"$eq": 1, "y": 2}}, "q.metadata.x.y", "cannot mix"),
    ],
    ids=[
        "not-an-object",
        "unknown-operator",
        "unknown-logical-operator",
        "and-not-a-list",
        "or-not-a-list",
        "or-item-not-an-object",
        "nested-path-reported",
        "in-not-a-list",
        "nin-not-a-list",
        "regex-not-a-string",
        "regex-does-not-compile",
        "path-without-root",
        "path-with-unknown-root",
        "path-with-empty-field",
        "field-mixed-with-operators",
    ],
)
def test_validate_reports_malformed_query(query: Any, error_path: str, fragment: str) -> None:
    errors = validate_query(query, "q")
    assert len(errors) == 1
    path, message = errors[0]
    assert path == error_path
    assert fragment in message


def test_validate_reports_every_error() -> None:
    query = {"metadata.a": {"$foo": 1, "$in": 2}, "bad": 1}
    assert [p for p, _ in validate_query(query, "q")] == [
        "q.metadata.a.$foo",
        "q.metadata.a.$in",
        "q.bad",
    ]


# --- $regex runs on RE2 ------------------------------------------------------------------


def test_a_catastrophic_backtracking_pattern_answers_at_once() -> None:
    """``^(a+)+$`` against 40 ``a`` and a ``!`` is 2**40 steps for a backtracking engine
    (this test would not finish on Python's ``re``); RE2 is linear in the text."""
    doc = {"metadata": {}, "params": {"user": "a" * 40 + "!"}}
    assert matches({"params.user": {"$regex": "^(a+)+$"}}, doc) is False
    assert matches({"params.user": {"$regex": "^(a+)+!$"}}, doc) is True


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("gpt-4", "gpt-4o-mini", True),
        ("^gpt-4o$", "gpt-4o-mini", False),
        ("(?i)^GPT", "gpt-4o", True),
        (r"\d+k$", "ctx-128k", True),
        ("^é", "été", True),
    ],
    ids=["search-unanchored", "anchored", "inline-flag", "classes", "unicode-text"],
)
def test_regex_keeps_search_semantics_on_strings(pattern: str, text: str, expected: bool) -> None:
    doc = {"metadata": {}, "params": {"model": text, "n": 5}}
    assert matches({"params.model": {"$regex": pattern}}, doc) is expected
    assert matches({"params.n": {"$regex": "5"}}, doc) is False


def test_a_backreference_never_matches_even_where_python_re_would() -> None:
    doc = {"metadata": {}, "params": {"model": "aa"}}
    assert matches({"params.model": {"$regex": r"(a)\1"}}, doc) is False


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        (r"(a)\1", "linear-time regex engine (RE2) does not support"),
        ("(?=gpt)", "linear-time regex engine (RE2) does not support"),
        ("(?<!x)y", "linear-time regex engine (RE2) does not support"),
        (r"end\Z", "linear-time regex engine (RE2) does not support"),
        ("a(", "not a valid regular expression"),
        ("a" * 1001, "longer than 1000 characters"),
        ("((a{100}){100}){100}", "too complex"),
        (r"\pL{1000}", "too complex"),
    ],
    ids=[
        "backreference",
        "lookahead",
        "lookbehind",
        "python-end-anchor",
        "malformed",
        "too-long",
        "too-many-repetitions",
        "too-large",
    ],
)
def test_validate_refuses_patterns_the_linear_engine_cannot_run(
    pattern: str, fragment: str
) -> None:
    errors = validate_query({"params.model": {"$regex": pattern}}, "q")
    assert len(errors) == 1
    path, message = errors[0]
    assert path == "q.params.model.$regex"
    assert fragment in message
    assert pattern not in message


def test_a_pattern_of_exactly_the_length_limit_is_accepted() -> None:
    assert validate_query({"params.model": {"$regex": "a" * 1000}}, "q") == []


def test_and_or_nesting_past_the_bound_is_reported_once_without_recursing() -> None:
    query: dict[str, Any] = {"params.model": "x"}
    for _ in range(5_000):
        query = {"$or": [query]}
    errors = validate_query(query, "q")
    assert len(errors) == 1
    assert "nest more than 8 levels" in errors[0][1]


def test_and_or_nesting_at_the_bound_is_accepted() -> None:
    query: dict[str, Any] = {"params.model": "x"}
    for _ in range(8):
        query = {"$and": [query]}
    assert validate_query(query, "q") == []


def test_lone_surrogates_neither_match_nor_raise() -> None:
    doc = {"metadata": {}, "params": {"model": "gpt\ud800"}}
    assert matches({"params.model": {"$regex": "gpt"}}, doc) is False
    assert matches({"params.model": {"$regex": "\ud800"}}, doc) is False
    [(_, message)] = validate_query({"params.model": {"$regex": "\ud800"}}, "q")
    assert message == "$regex is not valid UTF-8 text"
