"""Content keys: the one way eaglesearch names a piece of content by what it holds.

A key is the first ``length`` hex characters of the SHA-256 of the content's canonical text. JSON values are
written with sorted keys (so dict order never matters) and without NaN or infinity (they have no canonical form);
``str`` and ``bytes`` are hashed as given. Every keyed thing (trial keys, search fingerprints, stage artifacts,
generated data folders, tokenizer caches) goes through :func:`content_key`, so two places can never disagree on
how the same content is named.

``spaced`` keeps Python's default JSON separators (``", "`` and ``": "``) instead of the compact ones. Some keys
were defined that way before this helper existed (search fingerprints, synthetic data and tokenizer caches);
changing their text would rename existing Ray experiments and caches, so they keep it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any, *, spaced: bool = False) -> str:
    """``value`` as sorted JSON (compact unless ``spaced``); raises ``ValueError`` for NaN/infinity and
    ``TypeError`` for values JSON cannot hold."""
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(value, sort_keys=True, separators=separators, allow_nan=False)


def content_key(value: Any, length: int, *, spaced: bool = False) -> str:
    """The key of ``value``: SHA-256 of its canonical text (``str``/``bytes`` as given, anything else through
    :func:`canonical_json`), first ``length`` hex characters."""
    if not 1 <= length <= 64:
        raise ValueError(f"a content key has 1 to 64 hex characters, not {length}")
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    else:
        data = canonical_json(value, spaced=spaced).encode()
    return hashlib.sha256(data).hexdigest()[:length]
