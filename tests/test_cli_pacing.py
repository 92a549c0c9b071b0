"""``--pacing`` and ``--reserve`` reach the client that bulk, plan and undo build."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from katapult_async.cli import main
from katapult_async.cli._app import Settings, pacing_options, settings_of


@click.command()
@pacing_options
@click.pass_context
def _show(ctx: click.Context, rate_limit: int | None, window: float) -> None:
    client = settings_of(ctx).client(rate_limit=rate_limit, rate_limit_window=window)
    limiter = client.limiter
    click.echo(f"{limiter.pacing} {limiter._budget.usable(0.0)}")


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        ([], "burst 100"),
        (["--pacing", "smooth"], "smooth 99"),
        (["--reserve", "0.05"], "burst 95"),
        (["--pacing", "smooth", "--reserve", "0.1"], "smooth 90"),
    ],
)
def test_pacing_and_reserve_reach_the_client(
    args: list[str], shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KATAPULT_API_TOKEN", "kat_" + "x" * 30)
    settings = Settings(base_url="http://127.0.0.1:9", token_file=None, verbose=0, out=Console())
    result = CliRunner().invoke(_show, ["--rate-limit", "100", *args], obj=settings)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == shown


@pytest.mark.parametrize("command", ["bulk", "plan", "undo"])
def test_the_commands_that_spend_the_budget_take_them(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "--pacing [burst|smooth]" in result.output
    assert "--reserve" in result.output
    bad = CliRunner().invoke(main, [command, "x.csv", "--pacing", "fast"])
    assert bad.exit_code == 2
