"""Ids that look like the live API's (``prefix`` + 16 alphanumerics), made from counters.

A counter is mixed by a bijection of the 62**16 id space, so ids are unique, deterministic and
cheap (about a microsecond each) without drawing from the simulator's random generator.
"""

from __future__ import annotations

import functools
import string

_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
_BASE = len(_PAIRS)  # 62**2: two characters per divmod
_SPACE = 62**16
# Odd and not a multiple of 31, hence coprime with 62**16: multiplication is a bijection.
_MULTIPLIER = 29_463_164_580_155_446_246_695_239_681


def opaque_id(prefix: str, number: int) -> str:
    """Return the id numbered ``number`` for ``prefix``, e.g. ``vmnet_k3J9...``.

    Args:
        prefix: The id prefix with its underscore, e.g. ``"vmnet_"``.
        number: A non-negative sequence number; distinct numbers give distinct ids.
    """
    value = (number * _MULTIPLIER + _salt(prefix)) % _SPACE
    chars = []
    for _ in range(8):
        value, pair = divmod(value, _BASE)
        chars.append(_PAIRS[pair])
    return prefix + "".join(chars)


@functools.cache
def _salt(prefix: str) -> int:
    # A stable per-prefix offset, so different kinds of ids do not share digits.
    return int.from_bytes(prefix.encode(), "big") * 7919 % _SPACE
