"""The one content-key helper (spec/keys.py): stable names for the same content, whatever the dict order."""

from __future__ import annotations

import hashlib
import math

import pytest

from eaglesearch.spec.keys import canonical_json, content_key


def test_key_ignores_dict_order_and_is_the_sha256_prefix() -> None:
    a = content_key({"b": 1, "a": [1, 2.5, "x"]}, 20)
    assert a == content_key({"a": [1, 2.5, "x"], "b": 1}, 20)
    assert a == hashlib.sha256(b'{"a":[1,2.5,"x"],"b":1}').hexdigest()[:20]


def test_keys_defined_before_the_helper_keep_their_value() -> None:
    """Pinned from the hand-written hashes the helper replaced (tokenizer caches hashed spaced JSON)."""
    assert content_key({"a": [1, 2.5, "x"]}, 12, spaced=True) == "42e8953dff63"
    assert canonical_json({"a": 1}, spaced=True) == '{"a": 1}'


def test_str_and_bytes_are_hashed_as_given() -> None:
    assert content_key("abc", 64) == hashlib.sha256(b"abc").hexdigest()
    assert content_key(b"abc", 8) == content_key("abc", 8)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_numbers_have_no_key(bad: float) -> None:
    with pytest.raises(ValueError):
        content_key({"x": bad}, 16)


def test_length_is_checked() -> None:
    with pytest.raises(ValueError, match="1 to 64"):
        content_key({}, 65)
