"""Selecting interfaces on the command line: ``--organization``, ``--annotation``, ``--vm``, ``--to``.

:func:`selection_options` adds the options to a command (``bulk``, ``plan``); :class:`Selection`
holds what they say, checked before any request (a malformed ``--annotation`` is a usage error),
and :meth:`Selection.rows` turns the selected interfaces into the bulk input rows every command
consumes.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import attrs
import click

from katapult_async.cli._input import Row
from katapult_async.client import KatapultClient
from katapult_async.models import SpeedProfileRef

FC = TypeVar("FC", bound=Callable[..., Any])


def parse_annotation(value: str) -> tuple[str, str]:
    """``"KEY=VALUE"`` as ``(key, value)``.

    Raises:
        click.BadParameter: with no ``=`` or an empty key.
    """
    key, sep, val = value.partition("=")
    key = key.strip()
    if not sep:
        raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="'--annotation'")
    if not key:
        raise click.BadParameter(f"{value!r} has an empty key", param_hint="'--annotation'")
    if not key.isprintable() or not val.isprintable():
        raise click.BadParameter(f"{value!r} is not printable", param_hint="'--annotation'")
    return key, val.strip()


def _annotations(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    return tuple(parse_annotation(value) for value in values)


def _profile(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        SpeedProfileRef.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--to'") from None
    return value


def selection_options(command: FC) -> FC:
    """Add ``--organization``, ``--annotation``, ``--vm`` and ``--to`` to a command."""
    for decorator in reversed(
        (
            click.option(
                "--organization",
                "-o",
                help="Select the VMs of this organization (org_... or sub-domain).",
            ),
            click.option(
                "--annotation",
                "annotations",
                metavar="KEY=VALUE",
                multiple=True,
                callback=_annotations,
                help="With --organization: only VMs with this annotation (repeat: all must match).",
            ),
            click.option(
                "--vm",
                "vms",
                metavar="VM",
                multiple=True,
                help="Select this VM (vm_... or FQDN); repeat for more.",
            ),
            click.option(
                "--to",
                "to",
                metavar="PROFILE",
                callback=_profile,
                help="The speed profile for the selected interfaces (nsp_... or a permalink).",
            ),
        )
    ):
        command = decorator(command)
    return command


@attrs.frozen
class Selection:
    """What the selection options say: the VMs and the target profile."""

    organization: str | None
    annotations: tuple[tuple[str, str], ...]
    vms: tuple[str, ...]
    to: str | None

    @property
    def given(self) -> bool:
        """Whether any VM is selected."""
        return self.organization is not None or bool(self.vms)

    def check(self, file: str | None, *, to_required_with_file: bool = False) -> None:
        """Usage errors: FILE and a selection together, neither, or a selection without --to.

        Raises:
            click.UsageError: before any request.
        """
        if self.annotations and self.organization is None:
            raise click.UsageError(
                "--annotation selects VMs of an organization: add --organization"
            )
        if file is not None and self.given:
            raise click.UsageError("give FILE or a selection (--organization/--vm), not both")
        if file is None and not self.given:
            raise click.UsageError("give FILE or select VMs with --organization and/or --vm")
        if self.given and self.to is None:
            raise click.UsageError("a selection needs --to PROFILE")
        if file is not None and self.to is not None and not to_required_with_file:
            raise click.UsageError("--to is used with a selection; FILE names each profile")

    def describe(self) -> str:
        """A short text for messages: ``acme (role=db) + web-1.example.com``."""
        parts = []
        if self.organization is not None:
            filters = ", ".join(f"{k}={v}" for k, v in self.annotations)
            parts.append(f"{self.organization}" + (f" ({filters})" if filters else ""))
        parts.extend(self.vms)
        return " + ".join(parts)

    def journal_name(self) -> str:
        """A default journal file name, the same for the same selection and profile."""
        text = repr((self.organization, self.annotations, self.vms, self.to))
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        return f"katapult-bulk-{digest}.journal.jsonl"

    async def rows(self, client: KatapultClient) -> AsyncIterator[Row]:
        """One good :class:`Row` per selected interface (line numbers count from 1)."""
        assert self.to is not None
        interfaces = client.select_interfaces(
            organization=self.organization,
            annotations=self.annotations or None,
            virtual_machines=self.vms or None,
        )
        line = 0
        async with contextlib.aclosing(interfaces):
            async for iface in interfaces:
                line += 1
                yield Row(line, iface.id, self.to)
