"""Tables as users write them: CSV and TSV (pandas ``to_csv``, Excel, by hand) and Parquet.

A table is read with pandas: its first lines as text, cell by cell, to decide what the file is
(nothing is guessed from its first cell alone), then the whole file with pandas' own number
parsing, a column it cannot parse converted cell by cell:

- **the delimiter** is sniffed among ``,`` ``;`` tab and ``|`` (tab for ``.tsv``), or set
  (``[data] delimiter``); with ``;`` a decimal comma (``1,5``) reads as a number, as Excel
  writes it in much of Europe;
- **the header** is the first line when it names columns (a word where the column holds
  numbers), or when it is the ``0,1,…,n`` that ``pandas.DataFrame(X).to_csv()`` writes; or
  set (``[data] header``);
- **an index column** (the unnamed first column of ``to_csv()`` with its index) is dropped;
- **the label** is the column ``[data] label`` names, else the one named ``label``, ``target``,
  ``y`` or ``class``, else the last; for prediction, the model's feature names pick the columns
  by name, in the model's order.

Every problem is one :class:`~svmhpo.errors.DataError` line naming the file, the row (and its
line in the file) and the column, in plain words: an empty or header-only file, a missing value,
a cell that is not a number, a ragged line, a missing or extra column.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from svmhpo.errors import DataError, first_line

__all__ = ["LABEL_NAMES", "TABLE_SUFFIXES", "Table", "TableFormat", "read_features", "read_table"]

#: Column names taken as the label when ``[data] label`` names none (compared without case).
LABEL_NAMES = ("label", "target", "y", "class")
#: File types read as tables.
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet")
#: Cells read as a missing value (pandas' defaults, compared without case).
MISSING = frozenset({"", "na", "n/a", "nan", "-nan", "null", "none", "#n/a", "<na>", "nat"})
_DELIMITERS = ",;\t|"
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_MAX_LISTED = 8


@dataclass(frozen=True)
class TableFormat:
    """How to read a table; ``None`` everywhere means: work it out from the file."""

    #: The label column's name; ``None``: one named as in :data:`LABEL_NAMES`, else the last.
    label: str | None = None
    #: The feature columns by name, in this order; ``None``: every column but the label.
    features: tuple[str, ...] | None = None
    #: One character; ``None``: sniffed (tab for ``.tsv``).
    delimiter: str | None = None
    #: Whether the first line names the columns; ``None``: detected.
    header: bool | None = None


@dataclass(frozen=True)
class Table:
    """Features as float32, labels (``None`` when the file has none), and what names them."""

    X: np.ndarray
    y: np.ndarray | None
    #: The feature columns' names in order; ``None`` when the file names no columns.
    feature_names: tuple[str, ...] | None
    #: The label column's name (``None`` without a header or without labels).
    label: str | None
    #: What was decided about the file, for the one line said at load.
    notes: tuple[str, ...] = field(default=())


def _show(values: Sequence[str]) -> str:
    shown = ", ".join(repr(str(v)) for v in values[:_MAX_LISTED])
    return shown + (f" and {len(values) - _MAX_LISTED} more" if len(values) > _MAX_LISTED else "")


def _numbers(cells: np.ndarray, decimal_comma: bool) -> np.ndarray:
    """``cells`` (text) as float64; NaN where a cell is missing or not a number."""
    import pandas as pd

    text = pd.Series(cells, dtype=object).str.strip()
    if decimal_comma:
        text = text.where(text.str.contains(".", regex=False), text.str.replace(",", ".", regex=False))
    missing = text.str.lower().isin(MISSING)
    values = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(dtype=np.float64)
    return values


def _is_number(cell: str) -> bool:
    try:
        float(cell.strip().replace(",", "."))
    except ValueError:
        return False
    return cell.strip().lower() not in MISSING


class _Slow(Exception):
    """The fast reading met something it cannot explain: read the file again, cell by cell, to say what."""


def _text_cells(column: np.ndarray) -> np.ndarray:
    """A column as text, a missing cell (NaN where pandas parsed the column) as an empty string."""
    return np.array(["" if isinstance(c, float) and c != c else str(c) for c in column], dtype=object)


class _Cells:
    """A table's columns, their names (or ``None``), and the line in the file of each row.

    A column is text (read cell by cell) or what pandas parsed (numbers, or text with NaN for a
    missing cell). Pandas parses a clean MNIST-sized file about 20 times faster than reading it
    cell by cell; a column it could not make numbers of is converted cell by cell, so the first
    bad cell is named all the same, with its row, its line in the file and its column.
    """

    def __init__(
        self,
        path: Path,
        names: list[str] | None,
        columns: list[np.ndarray],
        lines: np.ndarray | None,
        decimal_comma: bool,
        notes: list[str],
        *,
        delimiter: str = ",",
        header: bool = False,
    ) -> None:
        self.path, self.names, self.columns, self.lines = path, names, columns, lines
        self.decimal_comma, self.notes = decimal_comma, notes
        self.delimiter, self.header, self.dropped_index = delimiter, header, False
        #: The parsed table behind ``columns`` when pandas parsed it: all of it converts at once.
        self.frame: Any = None

    @property
    def n_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def column_name(self, j: int) -> str:
        return repr(self.names[j]) if self.names is not None else f"{j + 1}"

    def where(self, i: int, j: int) -> str:
        line = f" (line {self.lines[i]})" if self.lines is not None else ""
        return f"{self.path}: row {i + 1}{line}, column {self.column_name(j)}"

    def _numbers(self, j: int) -> np.ndarray:
        """Column ``j`` as float64; NaN or ±inf where a cell is missing, not a number or not finite."""
        column = self.columns[j]
        if column.dtype.kind in "iuf":
            return column.astype(np.float64, copy=False)
        return _numbers(_text_cells(column), self.decimal_comma)

    def _problem(self, i: int, j: int) -> str:
        cell = self.columns[j][i]
        if isinstance(cell, float | np.floating):  # parsed by pandas: NaN is a missing cell
            return "missing value" if cell != cell else f"{str(cell)!r} is not a finite number"
        text = str(cell).strip()
        if text.lower() in MISSING:
            return "missing value" + (f" ({text!r})" if text else "")
        if _is_number(text):
            return f"{text!r} is not a finite number"
        return f"{text!r} is not a number"

    def features(self, order: Sequence[int]) -> np.ndarray:
        """The columns ``order`` as a float32 matrix; the first bad cell (by row, then column) is one line."""
        order = list(order)
        if self.frame is not None and all(self.columns[j].dtype.kind in "iuf" for j in order):
            X = self.frame.iloc[:, order].to_numpy(dtype=np.float32)
            if np.isfinite(X).all():
                return X
        X = np.empty((self.n_rows, len(order)), dtype=np.float64)
        first: tuple[int, int] | None = None
        for k, j in enumerate(order):
            X[:, k] = self._numbers(j)
            bad = np.flatnonzero(~np.isfinite(X[:, k]))
            if len(bad) and (first is None or bad[0] < first[0]):
                first = (int(bad[0]), j)
        if first is not None:
            raise DataError(f"{self.where(*first)}: {self._problem(*first)}")
        return X.astype(np.float32)

    def labels(self, j: int) -> np.ndarray:
        """Column ``j`` as labels: integers where all are whole numbers, else numbers, else the text."""
        cells = np.array([c.strip() for c in _text_cells(self.columns[j])], dtype=object)
        missing = np.flatnonzero([c.lower() in MISSING for c in cells])
        if len(missing):
            raise DataError(f"{self.where(int(missing[0]), j)}: missing label")
        values = _numbers(cells, self.decimal_comma)
        if np.isfinite(values).all():
            return values.astype(np.int64) if np.array_equal(values, np.round(values)) else values
        return cells.astype(str)


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start}); save it as CSV UTF-8 (Excel: File > Save As)"
        ) from None


def _sniff(path: Path, text: str, delimiter: str | None) -> str:
    if delimiter is not None:
        return delimiter
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    sample = "\n".join(text[:65536].splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        counts = {d: sample.count(d) for d in _DELIMITERS}
        best = max(counts, key=counts.__getitem__)
        return best if counts[best] else ","


_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


#: Lines read as text to decide the delimiter, the header and the columns before a fast read.
_HEAD_LINES = 200


def _text(path: Path, head: bool = False) -> str:
    """The file as text; with ``head``, only its first :data:`_HEAD_LINES` lines or so (whole lines)."""
    try:
        with open(path, "rb") as handle:
            if not head:
                raw = handle.read()
            else:
                size = 1 << 20
                while True:
                    handle.seek(0)
                    raw = handle.read(size)
                    if len(raw) < size:  # the whole file
                        break
                    if raw.count(b"\n") > _HEAD_LINES:
                        raw = raw[: raw.rfind(b"\n") + 1]  # whole lines: no character cut in two
                        break
                    size *= 4
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    text = _decode(path, raw)
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    return text


def _read_numbers(path: Path, fmt: TableFormat) -> _Cells:
    """Decide the layout from the first lines read as text, then let pandas parse the whole file."""
    import pandas as pd

    head = _named(_read_text(path, _text(path, head=True), fmt, nrows=_HEAD_LINES))
    try:
        frame = pd.read_csv(
            path,
            encoding="utf-8-sig",
            sep=head.delimiter,
            header=None,
            skiprows=1 if head.header else 0,
            skip_blank_lines=False,  # kept, then dropped: each row's line in the file is known
            decimal="," if head.decimal_comma else ".",
            engine="c",
            low_memory=False,
        )
    except pd.errors.ParserError as exc:
        _ragged(path, exc, head.delimiter)
        raise _Slow from None
    except (ValueError, pd.errors.EmptyDataError):  # not UTF-8 past the first lines: said exactly
        raise _Slow from None
    if head.dropped_index:
        frame = frame.iloc[:, 1:]
    blank = frame.iloc[:, 0].isna().to_numpy(copy=True)  # a blank line is NaN in every column: look where the first is
    if blank.any():
        blank[blank] = frame[blank].isna().all(axis=1).to_numpy()
    lines = np.flatnonzero(~blank) + (2 if head.header else 1)
    if blank.any():
        frame = frame[~blank]
    if frame.shape[1] != len(head.columns) or len(frame) == 0:
        raise _Slow
    columns = [frame.iloc[:, j].to_numpy() for j in range(frame.shape[1])]
    cells = _Cells(path, head.names, columns, lines, head.decimal_comma, head.notes, delimiter=head.delimiter)
    cells.frame = frame
    return cells


def _ragged(path: Path, exc: Exception, delimiter: str) -> None:
    """Raise pandas' "Expected 5 fields in line 7, saw 6" (a line of the file) as one line in words, if it says that."""
    match = _RAGGED.search(str(exc))
    if match:
        expected, line, saw = match.groups()
        raise DataError(
            f"{path}: line {line} has {saw} fields where the lines before it have {expected} "
            f"({_DELIMITER_NAMES.get(delimiter, repr(delimiter))}-separated)"
        ) from None


def _read_text(path: Path, text: str, fmt: TableFormat, nrows: int | None = None) -> _Cells:
    """Every cell as text (the first ``nrows`` lines, or all), each row with its line in the file."""
    import pandas as pd

    delimiter = _sniff(path, text, fmt.delimiter)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
            nrows=nrows,
        )
    except pd.errors.ParserError as exc:
        _ragged(path, exc, delimiter)
        raise DataError(f"{path}: cannot parse ({first_line(exc)})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    frame = frame.fillna("")
    blank = (frame == "").all(axis=1).to_numpy()
    lines = np.flatnonzero(~blank) + 1
    rows = frame.to_numpy(dtype=object)[~blank]
    notes = []
    if delimiter != ",":
        notes.append(f"{_DELIMITER_NAMES.get(delimiter, repr(delimiter))}-separated")
    if rows.shape[1] < 2:
        other = [d for d in _DELIMITERS if d != delimiter and d in text[:4096]]
        hint = f"; is it {_DELIMITER_NAMES[other[0]]}-separated? set [data] delimiter" if other else ""
        raise DataError(
            f"{path}: one column found ({_DELIMITER_NAMES.get(delimiter, repr(delimiter))}-separated); "
            f"a table needs feature columns and a label{hint}"
        )
    header = fmt.header if fmt.header is not None else _has_header(rows)
    names = None
    if header:
        names = [str(c).strip() for c in rows[0]]
        rows, lines = rows[1:], lines[1:]
    if len(rows) == 0:
        raise DataError(f"{path}: a header line and no data rows" if header else f"{path}: no data rows")
    columns = [rows[:, j].astype(str) for j in range(rows.shape[1])]
    return _Cells(path, names, columns, lines, delimiter == ";", notes, delimiter=delimiter, header=bool(header))


def _default_names(names: list[str]) -> bool:
    """Whether a header is ``0..n-1``, with at most a blank first cell and a label name last: pandas' own."""
    numeric = [n for n in names if _is_number(n)]
    if len(numeric) < 2 or len(numeric) < len(names) - 2:
        return False
    try:
        values = [int(n) for n in numeric]
    except ValueError:
        return False
    return (
        len(values) >= 3
        and values == list(range(len(values)))
        and (all(_is_number(n) for n in names[:-1]) or (names[0] == "" and all(_is_number(n) for n in names[1:-1])))
    )


def _has_header(rows: np.ndarray) -> bool:
    """Whether the first line names the columns: a word where its column holds numbers, or ``0,1,…,n``."""
    first = [str(c).strip() for c in rows[0]]
    rest = rows[1:51]
    if not len(rest):  # one line: a header when it holds a word (no data row has only labels)
        return any(cell and not _is_number(cell) for cell in first[:-1])
    for j, cell in enumerate(first):
        if not cell or _is_number(cell):
            continue
        below = [str(c).strip() for c in rest[:, j]]
        if any(_is_number(c) for c in below):  # a word above numbers: a name
            return True
    if _default_names(first):
        return True
    # every column holds words (string labels and nothing else are rare): a header when the first line's
    # words appear nowhere below it, e.g. ``name,species`` over ``a,cat``
    if first and all(cell and not _is_number(cell) for cell in first) and len(rest):
        return not any(cell in set(map(str, rest[:, j])) for j, cell in enumerate(first))
    return False


def _read_parquet(path: Path) -> _Cells:
    try:
        import pandas as pd

        frame = pd.read_parquet(path)
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow (pip install 'svmhpo[parquet]')") from None
    except Exception as exc:  # pyarrow raises its own kinds for a corrupt file
        raise DataError(f"{path}: not a readable Parquet file ({first_line(exc)})") from None
    if frame.shape[0] == 0:
        raise DataError(f"{path}: no data rows")
    columns = [frame[c].to_numpy() for c in frame.columns]
    cells = _Cells(path, [str(c) for c in frame.columns], columns, None, False, [])
    cells.frame = frame
    return cells


def _cells(path: Path, fmt: TableFormat, exact: bool) -> _Cells:
    """The table's cells, read fast (numbers parsed by pandas) or ``exact`` (text, each cell checked)."""
    if path.suffix.lower() == ".parquet":
        return _named(_read_parquet(path))
    return _named(_read_text(path, _text(path), fmt)) if exact else _read_numbers(path, fmt)


def _named(cells: _Cells) -> _Cells:
    """Drop an index column, take pandas' ``0..n-1`` header for no names, refuse a name used twice."""
    path = cells.path
    if cells.names is not None:
        index = cells.names[0]
        if index == "" or index.startswith("Unnamed: 0") or index == "index":
            cells.names, cells.columns = cells.names[1:], cells.columns[1:]
            cells.dropped_index = True
            cells.notes.append("index column dropped")
        if _default_names(cells.names):
            cells.names = None  # pandas' 0..n-1: a header that names nothing
            cells.notes.append("header of column numbers skipped")
    if cells.names is not None:
        duplicated = sorted({n for n in cells.names if cells.names.count(n) > 1})
        if duplicated:
            raise DataError(f"{path}: column {_show(duplicated)} appears more than once in the header")
    return cells


def _label_column(cells: _Cells, fmt: TableFormat) -> tuple[int, str]:
    """The label column's index and how it was chosen."""
    names = cells.names
    if fmt.label is not None:
        if names is None:
            raise DataError(
                f"{cells.path}: has no header line, so the label column {fmt.label!r} names no column "
                "(set [data] header = true if its first line names the columns)"
            )
        if fmt.label not in names:
            near = [n for n in names if n.lower() == fmt.label.lower()]
            hint = f" (did you mean {near[0]!r}?)" if near else f"; columns: {_show(names)}"
            raise DataError(f"{cells.path}: no column named {fmt.label!r} for the label{hint}")
        return names.index(fmt.label), f"label column {fmt.label!r} (as set)"
    if names is not None:
        named = [j for j, n in enumerate(names) if n.lower() in LABEL_NAMES]
        if len(named) == 1:
            return named[0], f"label column {names[named[0]]!r}"
        if len(named) > 1:
            raise DataError(
                f"{cells.path}: columns {_show([names[j] for j in named])} could each be the label; "
                "set [data] label to the one that is"
            )
        return len(names) - 1, (
            f"label: the last column, {names[-1]!r} "
            f"(none is named {', '.join(LABEL_NAMES)}; set [data] label to choose)"
        )
    return len(cells.columns) - 1, "label: the last column (no column names)"


def _pick(cells: _Cells, wanted: Sequence[str], what: str) -> list[int]:
    assert cells.names is not None
    missing = [n for n in wanted if n not in cells.names]
    if missing:
        raise DataError(f"{cells.path}: no column {_show(missing)} ({what}); columns: {_show(cells.names)}")
    return [cells.names.index(n) for n in wanted]


def _fast_then_exact(read: Callable[[bool], Table]) -> Table:
    """Run ``read(exact)`` fast, and again exactly when the fast reading cannot say what is wrong."""
    try:
        return read(False)
    except _Slow:
        return read(True)


def read_table(path: str | Path, fmt: TableFormat | None = None) -> Table:
    """Features and labels of a table to train on (see the module docstring for what is worked out)."""
    path, fmt = Path(path), fmt or TableFormat()
    return _fast_then_exact(lambda exact: _training(_cells(path, fmt, exact), fmt))


def _training(cells: _Cells, fmt: TableFormat) -> Table:
    path = cells.path
    if len(cells.columns) < 2:
        raise DataError(f"{path}: a table needs at least one feature column and a label column")
    label, said = _label_column(cells, fmt)
    if fmt.features is not None:
        if cells.names is None:
            raise DataError(f"{path}: has no header line, so [data] features cannot name its columns")
        order = _pick(cells, fmt.features, "[data] features")
        if label in order:
            raise DataError(f"{path}: column {cells.names[label]!r} is both the label and a feature")
    else:
        order = [j for j in range(len(cells.columns)) if j != label]
    names = None if cells.names is None else tuple(cells.names[j] for j in order)
    X = cells.features(order)
    y = cells.labels(label)
    return Table(X, y, names, None if cells.names is None else cells.names[label], (*cells.notes, said))


def read_features(
    path: str | Path,
    n_features: int,
    feature_names: Sequence[str] | None = None,
    label: str | None = None,
    fmt: TableFormat | None = None,
) -> Table:
    """A table to predict on with a model of ``n_features`` features (named ``feature_names``).

    With a header and a model that knows its features' names, the columns are taken by name, in
    the model's order; a missing one, or one that is neither a feature nor the label, is refused.
    Otherwise the columns are taken by position: ``n_features`` of them, and optionally the
    label as one more, last (or named as in :data:`LABEL_NAMES`).
    """
    path, fmt = Path(path), fmt or TableFormat()
    return _fast_then_exact(lambda exact: _prediction(_cells(path, fmt, exact), n_features, feature_names, label))


def _prediction(cells: _Cells, n_features: int, feature_names: Sequence[str] | None, label: str | None) -> Table:
    path = cells.path
    if cells.names is not None and feature_names is not None:
        order = _pick(cells, list(feature_names), "a feature of the model")
        rest = [j for j in range(len(cells.names)) if j not in order]
        label_names = {label} if label else set()
        label_names |= {n for n in cells.names if n.lower() in LABEL_NAMES}
        extra = [cells.names[j] for j in rest if cells.names[j] not in label_names]
        if extra:
            raise DataError(f"{path}: column {_show(extra)} is not a feature of the model, nor a label")
        if len(rest) > 1:
            raise DataError(f"{path}: columns {_show([cells.names[j] for j in rest])} could each be the label")
        y = cells.labels(rest[0]) if rest else None
        return Table(
            cells.features(order),
            y,
            tuple(feature_names),
            cells.names[rest[0]] if rest else None,
            (*cells.notes, "columns taken by name"),
        )
    n = len(cells.columns)
    if n == n_features:
        return Table(cells.features(range(n)), None, None, None, tuple(cells.notes))
    if n == n_features + 1:
        j, said = _label_column(cells, TableFormat(label=label if cells.names and label in cells.names else None))
        order = [k for k in range(n) if k != j]
        return Table(cells.features(order), cells.labels(j), None, None, (*cells.notes, said))
    raise DataError(f"{path}: {n} columns; the model takes {n_features} features (and optionally a label column)")
