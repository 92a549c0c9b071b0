"""Input validation shared by the models, the client and the CLI (pure, no I/O)."""

from __future__ import annotations

MAX_IDENTIFIER_LENGTH = 128


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
    if not value.isprintable() or any(ch.isspace() for ch in value):
        raise ValueError(f"{what} {value!r} contains whitespace or unprintable characters")
    return value
