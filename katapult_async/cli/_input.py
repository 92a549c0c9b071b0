"""Bulk input: CSV or JSON Lines rows, read lazily, each checked into a good or a bad :class:`Row`.

A bad row carries its problem and line number, so the run reports it and goes on; only a file that
cannot be opened or a CSV header without the needed columns stops the command before it sends.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import attrs
import click

from katapult_async._validate import validate_identifier
from katapult_async.models import SpeedProfileRef

INPUT_COLUMNS = ("interface", "speed_profile")
"""The CSV header (and JSON Lines keys) of a bulk input file."""


@attrs.frozen
class Row:
    """One item of bulk input: a good one, or a bad one with ``problem`` set."""

    line: int
    interface: str
    speed_profile: str
    problem: str | None = None
    previous: str | None = None
    """The profile the interface had before, when known (from a plan or a journal)."""

    @property
    def message(self) -> str:
        """The problem, naming the line: ``"line 7: interface is empty"``."""
        return f"line {self.line}: {self.problem}"


def _check_row(line: int, interface: object, speed_profile: object) -> Row:
    """Validate one row's values; a bad value gives a row with ``problem`` set."""
    values: dict[str, str] = {}
    problem: str | None = None
    for name, value in zip(INPUT_COLUMNS, (interface, speed_profile), strict=True):
        if value is None:
            problem = problem or f"{name} is missing"
            values[name] = ""
            continue
        if not isinstance(value, str):
            problem = problem or f"{name} must be a string, not {type(value).__name__}"
            values[name] = json.dumps(value)
            continue
        value = value.strip()
        values[name] = value
        if problem is None:
            if not value:
                problem = f"{name} is empty"
                continue
            try:
                validate_identifier(value, what=name)
                if name == "speed_profile":
                    SpeedProfileRef.parse(value)
            except ValueError as exc:
                problem = str(exc)
    return Row(line, values["interface"], values["speed_profile"], problem)


def _csv_problem(exc: csv.Error, start: int, end: int) -> str:
    """What is wrong with the CSV record that starts on line ``start``, in the user's terms."""
    if "unexpected end of data" in str(exc):
        return (
            "unterminated quote: the quoted value that starts on this line is never closed "
            f"(it runs to the end of the file, line {end})"
        )
    return f"invalid CSV: {exc}"


def _detect_format(name: str, first_line: str | None) -> str:
    """``"csv"`` or ``"jsonl"``: by extension, else by a first non-blank character ``{``."""
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    return "jsonl" if first_line is not None and first_line.lstrip().startswith("{") else "csv"


class BulkInput:
    """A bulk input file (or stdin), read lazily one row at a time.

    The file is read as bytes and decoded line by line, so one undecodable line becomes one bad
    row rather than the end of the run. The header of a CSV file is read and checked when the file
    is opened, so that a file with the wrong columns fails before anything is sent.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.is_stdin = source == "-"
        # click.open_file maps "-" to binary stdin and never closes a standard stream
        try:
            self._stream: IO[bytes] = click.open_file(source, "rb")
        except OSError as exc:  # a file that is not there is a wrong argument: exit status 2
            raise click.UsageError(
                f"cannot open the input file {source}: {exc.strerror or exc}"
            ) from None
        try:
            self._lines = self._decoded()
            peeked: list[str] = []
            first: str | None = None
            for line in self._lines:
                peeked.append(line)
                if line.strip():
                    first = line
                    break
            self.format = _detect_format(source, first)
            self._peeked: Iterator[str] = itertools.chain(peeked, self._lines)
            self._csv: Any = None
            self._columns = (0, 1)
            if self.format == "csv" and first is not None:
                self._read_header()
        except BaseException:
            self.close()
            raise

    def _decoded(self) -> Iterator[str]:
        # surrogateescape keeps undecodable bytes as lone surrogates, which the id check rejects.
        for number, raw in enumerate(self._stream):
            line = raw.decode("utf-8", "surrogateescape")
            yield line.removeprefix("\ufeff") if number == 0 else line

    def _read_header(self) -> None:
        # strict: a quote left open is an error ("unexpected end of data"), not one value that
        # swallows the rest of the file and then lacks a column
        self._csv = csv.reader(self._peeked, strict=True)
        try:
            header = next(self._csv, None) or []
        except csv.Error as exc:
            raise click.UsageError(
                f"{self.source}: the CSV header cannot be read: "
                f"{_csv_problem(exc, 1, self._csv.line_num)}"
            ) from None
        names = [name.strip().lower() for name in header]
        missing = [column for column in INPUT_COLUMNS if column not in names]
        if missing:
            shown = ",".join(header) if all(h.isprintable() for h in header) else repr(header)
            raise click.UsageError(
                f"{self.source}: the CSV header must name the columns "
                f"{','.join(INPUT_COLUMNS)} (missing {', '.join(missing)}; got {shown or 'nothing'})"
            )
        self._columns = (names.index(INPUT_COLUMNS[0]), names.index(INPUT_COLUMNS[1]))

    def close(self) -> None:
        """Close the file (never stdin)."""
        self._stream.close()

    def count(self) -> int | None:
        """The number of items, counted cheaply, when the input is a regular file; else None.

        Counts non-blank lines (minus the CSV header) without parsing them, so a quoted CSV value
        that spans lines makes it overcount: it only sizes the progress bar.
        """
        if self.is_stdin or not Path(self.source).is_file():
            return None
        with open(self.source, "rb") as f:
            lines = sum(1 for line in f if line.strip())
        return max(0, lines - 1) if self.format == "csv" else lines

    def rows(self) -> Iterator[Row]:
        """Every item in order, good and bad, with its line number; lazily."""
        if self.format == "jsonl":
            return self._jsonl_rows()
        return self._csv_rows()

    def _csv_rows(self) -> Iterator[Row]:
        if self._csv is None:  # an empty file
            return
        first, second = self._columns
        while True:
            start = self._csv.line_num + 1
            try:
                record = next(self._csv)
            except StopIteration:
                return
            except csv.Error as exc:  # the reader goes on at the next line
                yield Row(start, "", "", _csv_problem(exc, start, self._csv.line_num))
                continue
            if not record or all(not cell.strip() for cell in record):
                continue
            line = self._csv.line_num
            if len(record) <= max(first, second):
                name = INPUT_COLUMNS[0] if len(record) <= first else INPUT_COLUMNS[1]
                yield Row(line, "", "", f"missing column {name}")
                continue
            yield _check_row(line, record[first], record[second])

    def _jsonl_rows(self) -> Iterator[Row]:
        for line, text in enumerate(self._peeked, 1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except ValueError as exc:
                yield Row(line, "", "", f"invalid JSON: {exc}")
                continue
            if not isinstance(data, dict):
                yield Row(line, "", "", f"expected a JSON object, got {type(data).__name__}")
                continue
            yield _check_row(line, data.get(INPUT_COLUMNS[0]), data.get(INPUT_COLUMNS[1]))
