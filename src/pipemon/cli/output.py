"""`--output table|json|csv` of the listing commands: one list of columns, three renderings.

table: for people (client strings made safe and cut, see text.py); json: the API's objects as they came,
for programs; csv: the table's columns with a header, every value whole.
"""
from __future__ import annotations

import csv
import enum
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from pipemon.cli.text import console, escaped, safe


class Output(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


OutputOption = typer.Option(Output.TABLE, "--output", "-o", case_sensitive=False,
                            help="table for people; json (the API's objects) or csv (the table's columns, "
                                 "whole) for programs.")


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    value: Callable[[dict], Any]                       # the cell's data, as csv writes it
    cell: Callable[[dict], Text | str] | None = None   # the table's rendering; default: safe(value)

    def render(self, item: dict) -> Text | str:
        if self.cell is not None:
            return self.cell(item)
        v = self.value(item)
        return safe("" if v is None else v)


# JSON escapes C0 controls itself; these would still act on a terminal, and stay valid JSON escaped
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def emit(fmt: Output, title: str, columns: Iterable[Column], items: list[dict]) -> None:
    columns = list(columns)
    if fmt is Output.JSON:
        text = json.dumps(items, ensure_ascii=False, indent=2)
        sys.stdout.write(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", text) + "\n")
    elif fmt is Output.CSV:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow([c.header for c in columns])
        for item in items:
            w.writerow([_csv(c.value(item)) for c in columns])
    else:
        t = Table(title=safe(title, None), header_style="bold")
        for c in columns:
            t.add_column(c.header, overflow="fold")
        for item in items:
            t.add_row(*(c.render(item) for c in columns))
        console().print(t)
    sys.stdout.flush()


def _csv(v: Any) -> str:
    """Whole, but escaped: a csv printed to a terminal sends it no escape sequence."""
    if v is None:
        return ""
    return escaped(v if isinstance(v, str) else str(v))
