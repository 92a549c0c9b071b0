"""Input validation shared by the models, the client and the CLI (pure, no I/O): ids and
permalinks, the client's base URL and its API token."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from katapult_async.errors import ConfigurationError

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
    # Printable ASCII holds one whitespace character only, the space: no regex needed for it.
    clean = " " not in value if value.isascii() else _BAD_CHARACTER.search(value) is None
    if not (clean and value.isprintable()):
        raise ValueError(f"{what} {value!r} contains whitespace or unprintable characters")
    return value


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True  # *.localhost names go to DNS on some systems: only the literal name counts
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_base_url(base_url: str, *, allow_insecure_http: bool) -> str:
    """Check the client's ``base_url`` and return it without a trailing slash.

    Raises:
        ConfigurationError: when it is not an http(s) URL, carries credentials, or is plain
            ``http://`` to a host that is not loopback and ``allow_insecure_http`` is False.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
    if parts.username or parts.password:
        raise ConfigurationError("base_url must not carry credentials")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing plain http:// to {parts.hostname}: the token would travel unencrypted "
            "(use https, a loopback host, or allow_insecure_http=True)"
        )
    return base_url.rstrip("/")


def validate_token(token: object) -> str:
    """Check an API token and return it stripped; an error never echoes the token.

    Raises:
        ConfigurationError: when it is not a string, or empty, or contains whitespace or
            control characters.
    """
    if not isinstance(token, str):
        raise ConfigurationError("the API token must be a string")
    token = token.strip()
    if not token or not token.isprintable() or any(ch.isspace() for ch in token):
        # Never echo the token itself.
        raise ConfigurationError("the API token is empty or contains whitespace/control characters")
    return token
