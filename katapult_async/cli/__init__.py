"""The ``katapult-async`` command: click commands over plain async functions, shown with rich.

Each command parses its options, then hands one coroutine to
:func:`~katapult_async.cli._app.run_command`, which runs it with ``asyncio.run`` and turns the
errors a user can cause (a bad token, an unknown interface, a missing file) into a one-line
message on stderr and a non-zero exit status, never a traceback.

Exit statuses: 0 success; 1 an error, or a bulk run in which an item ended ``failed`` or
``error``; 2 a usage error; 130 interrupted by Ctrl-C (or SIGTERM).

The API token is read from ``--token-file`` or ``KATAPULT_API_TOKEN`` and never printed: every
message and log line passes through :meth:`~katapult_async.cli._app.Settings.redact`, and the
journal and results files hold no token. (``simulate`` and ``demo`` print the simulator's fake
local token on purpose.)

This module holds the group and registers the commands; the private modules own the rest:

- ``_app``: the group's settings, token redaction, logging, running work, exit statuses, errors.
- ``_commands``: ``update``, ``task``, ``profiles``, ``interfaces``, ``budget``.
- ``_input``: bulk input files (CSV, JSON Lines) read into checked rows.
- ``_view``: a bulk run's counts, its live display and its summary.
- ``_bulk``: the ``bulk`` command, its dry run and its results file.
- ``_select``: the selection options (``--organization``, ``--annotation``, ``--vm``, ``--to``).
- ``_plan``: the ``plan`` command, and reading a plan back for ``bulk PLAN``.
- ``_undo``: the ``undo`` command.
- ``_sim``: ``simulate`` and ``demo``, which run the API simulator.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from katapult_async.cli._app import (
    LOG_FORMATS,
    Settings,
    global_options_after_subcommand,
    output_console,
    setup_logging,
)
from katapult_async.cli._bulk import bulk
from katapult_async.cli._commands import budget, interfaces, profiles, task_command, update
from katapult_async.cli._plan import plan
from katapult_async.cli._sim import demo, simulate
from katapult_async.cli._undo import undo
from katapult_async.client import DEFAULT_BASE_URL, TOKEN_ENV_VAR

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"Read the API token from this file (default: the {TOKEN_ENV_VAR} environment variable).",
)
@click.option(
    "--base-url",
    default=DEFAULT_BASE_URL,
    show_default=True,
    envvar="KATAPULT_BASE_URL",
    help="Katapult Core API base URL. Plain http:// is refused unless the host is loopback.",
)
@click.option("-v", "--verbose", count=True, help="Log to stderr: -v for INFO, -vv for DEBUG.")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="How logs look on stderr: text, or JSON lines carrying request_id, interface_id, "
    "task_id and attempt where known (then WARNING and up even without -v).",
)
@click.version_option(package_name="katapult-async", prog_name="katapult-async")
@click.pass_context
def main(
    ctx: click.Context, token_file: Path | None, base_url: str, verbose: int, log_format: str
) -> None:
    """Change the network speed profiles of Katapult VM network interfaces.

    Start with `katapult-async demo`: a bulk update of 500 interfaces against the built-in API
    simulator, paced to its rate limit, with no token needed.

    The options below may also follow the command (`katapult-async bulk FILE --base-url URL`).
    """
    settings = Settings(
        base_url=base_url,
        token_file=token_file,
        verbose=verbose,
        out=output_console(),
        log_format=log_format,
    )
    settings.remember_secret(os.environ.get(TOKEN_ENV_VAR))
    ctx.obj = settings
    setup_logging(ctx, settings)


main.add_command(update)
main.add_command(task_command)
main.add_command(profiles)
main.add_command(interfaces)
main.add_command(budget)
main.add_command(bulk)
main.add_command(plan)
main.add_command(undo)
main.add_command(simulate)
main.add_command(demo)

# `katapult-async bulk FILE --base-url ...`, as users type them (not for the simulator's commands,
# which send nothing to an API).
for _command in main.commands.values():
    global_options_after_subcommand(_command, api=_command.name not in ("simulate", "demo"))
