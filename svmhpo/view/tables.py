"""Rows of plain values as a table, JSON, CSV or YAML: the ``-f`` option of the listing commands.

The formats are the stock ``optuna`` command line's (``table``, ``json``, ``yaml``) plus ``csv``
for spreadsheets. Nested values (a trial's parameters) are flattened into columns first.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal, get_args

import yaml

from svmhpo.hpo.publish import params_text

__all__ = ["FORMATS", "Format", "params_text", "render"]

Format = Literal["table", "json", "csv", "yaml"]
FORMATS: tuple[str, ...] = get_args(Format)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):  # a cross-validated trial's fold scores
        return " ".join(_cell(v) for v in value)
    return str(value)


def render(rows: list[dict[str, Any]], fmt: Format = "table") -> str:
    """``rows`` (dicts with the same keys, in order) in format ``fmt``, ending with a newline."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(json.loads(json.dumps(rows, default=str)), sort_keys=False, allow_unicode=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    if not rows:
        return "(none)\n"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [all(_is_number(row.get(c)) for row in rows) for c in columns]

    def line(values: list[str]) -> str:
        cells = (v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True))
        return "  ".join(cells).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)]) + "\n"


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))
