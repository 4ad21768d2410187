"""The verifier's stdlib RFC 8785 implementation agrees with the ``rfc8785`` library."""

from __future__ import annotations

import math

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import jcs

keys = st.text(max_size=6) | st.sampled_from(["a", "b", "\ufb01", "\U0001f600", "\u00e9", "A", "aa"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4))


@settings(max_examples=400, deadline=None)
@given(values)
def test_exact_and_checked_match_the_library(value) -> None:  # type: ignore[no-untyped-def]
    expected = rfc8785.dumps(value)
    assert jcs.dumps(value) == expected
    assert jcs.dumps_checked(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, b"1"),
        (-0.0, b"0"),
        (1e21, b"1e+21"),
        (1e-7, b"1e-7"),
        (0.000001, b"0.000001"),
        (123456789012345680000.0, b"123456789012345680000"),
        ({"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}, None),
        ('\u0007"\\\n', b'"\\u0007\\"\\\\\\n"'),
    ],
)
def test_known_answers(value, expected) -> None:  # type: ignore[no-untyped-def]
    assert jcs.dumps(value) == (expected or rfc8785.dumps(value))


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2**53, "\ud800", {1: 2}, object()])
def test_values_without_a_canonical_form_are_refused(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(jcs.CanonicalizationError):
        jcs.dumps(bad)


def test_checked_falls_back_for_floats_big_integers_and_astral_keys() -> None:
    calls = []

    def exact(v):  # type: ignore[no-untyped-def]
        calls.append(v)
        return rfc8785.dumps(v)

    for v in ({"x": 1.5}, {"x": 2**52 + 1}, {"\U0001f600": 1}):
        jcs.dumps_checked(v, exact=exact)
    assert len(calls) == 3
    jcs.dumps_checked({"x": 12, "s": "plain"}, exact=exact)
    assert len(calls) == 3
    # Number-like text inside strings (times, versions) is no reason to fall back ...
    jcs.dumps_checked({"at": "2025-01-02T06:28:39.123456Z", "v": [",1.5", ':12e3"\\'], "k:1.5": 0}, exact=exact)
    assert len(calls) == 3
    # ... a number token after such a string still is.
    for v in ({"at": "06:28:39.1", "x": 0.5}, ['"', -1e-7], {"a": "\\", "b": 1234567890123456}):
        jcs.dumps_checked(v, exact=exact)
    assert len(calls) == 6
