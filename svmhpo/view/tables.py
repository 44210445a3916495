"""Results as a table, JSON, CSV or YAML: the ``-f`` option of every command that prints a result.

The formats are the stock ``optuna`` command line's (``table``, ``json``, ``yaml``) plus ``csv``
for spreadsheets. :func:`render` writes rows (``studies``, ``trials``); :func:`render_result`
writes one command's result (``best``, ``run``, ``train``, ...), a CSV of it being one row with
its nested keys joined by dots. In CSV a list (a cross-validated trial's fold scores) is one cell
of JSON, which a spreadsheet or ``json.loads`` reads back.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal, get_args

import yaml

from svmhpo.hpo.publish import params_text

__all__ = ["FORMATS", "Format", "flatten", "params_text", "render", "render_result"]

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
        writer.writerows({k: _csv_cell(v) for k, v in row.items()} for row in rows)
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


def _csv_cell(value: Any) -> Any:
    return json.dumps(value, default=str) if isinstance(value, list | dict) else value


def flatten(result: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"best": {"trial": 3}}`` as ``{"best.trial": 3}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = None if value == {} else value
    return flat


def render_result(result: dict[str, Any] | list[dict[str, Any]], fmt: Format) -> str:
    """One command's result in ``fmt`` (``json``, ``yaml`` or ``csv``: a row per result, its
    nested keys joined by dots), ending with a newline; ``table`` is each command's own text."""
    if fmt == "table":
        raise ValueError("a result's table is its command's own text")
    rows = result if isinstance(result, list) else [result]
    if fmt == "csv":
        return render([flatten(row) for row in rows], "csv")
    return render(result, fmt)  # type: ignore[arg-type]


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))
