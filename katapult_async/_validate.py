"""Input validation shared by the models, the client and the CLI (pure, no I/O)."""

from __future__ import annotations

import re

MAX_IDENTIFIER_LENGTH = 128

# Printable and free of whitespace: what str.isprintable() allows, minus every Unicode space.
_BAD_CHARACTER = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u00ad\u2028\u2029\ufeff]")


def validate_identifier(value: object, *, what: str = "id") -> str:
    """Check that ``value`` can travel as an id or permalink, and return it.

    Ids and permalinks must be non-empty strings of at most 128 printable characters with no
    whitespace or control characters. They are only ever sent as JSON values or encoded query values.

    Raises:
        TypeError: when ``value`` is not a string.
        ValueError: when it is empty, too long, or contains whitespace or unprintable characters.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise ValueError(f"{what} is longer than {MAX_IDENTIFIER_LENGTH} characters")
    if _BAD_CHARACTER.search(value) is not None or not value.isprintable():
        raise ValueError(f"{what} {value!r} contains whitespace or unprintable characters")
    return value
