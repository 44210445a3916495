"""Reading an MNIST-sized CSV (70,000 × 784 and a label, written by pandas ``to_csv``), side by side.

- ``read_table``: svmhpo's reader as it runs (the layout decided from the first lines, the
  numbers parsed by pandas);
- ``exact``: the same reader made to read every cell as text (its fallback when pandas cannot
  parse the file at all, e.g. a byte that is not UTF-8 past the first lines);
- ``pandas``: plain ``pandas.read_csv`` (the floor: no header detection, no label choice);
- ``np.loadtxt``: what svmhpo read CSVs with before (it took pandas' ``0..n`` header for a row).

Target: ``read_table`` within 3× of plain pandas, and far below ``exact``.

    python -m bench.read_table [--rows 70000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from svmhpo.svm.tables import TableFormat, _cells, _training, read_table


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(rows: int = 70_000) -> dict[str, float]:
    """Time the four readers on one generated file; return their seconds and the ratios to pandas."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.integers(0, 256, size=(rows, 784)), columns=[f"pixel{i}" for i in range(784)])
    frame["label"] = rng.integers(0, 10, size=rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mnist.csv"
        frame.to_csv(path, index=False)
        size = path.stat().st_size / 2**20
        seconds = {
            "read_table": _timed(lambda: read_table(path)),
            "exact": _timed(lambda: _training(_cells(path, TableFormat(), exact=True), TableFormat())),
            "pandas": _timed(lambda: pd.read_csv(path)),
            "np.loadtxt": _timed(lambda: np.loadtxt(path, delimiter=",", skiprows=1)),
        }
    print(f"{rows:,} × 785 CSV, {size:.0f} MB")
    for name, value in seconds.items():
        print(f"  {name:<11} {value:7.2f} s   {value / seconds['pandas']:5.1f}× pandas")
    return {
        **seconds,
        "ratio": seconds["read_table"] / seconds["pandas"],
        "ratio_exact": seconds["exact"] / seconds["pandas"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=70_000)
    main(parser.parse_args().rows)
