"""``seglab compare``: the comparison of one or several sweeps, its pictures and CSVs logged under
``compare/`` of every one of their parent runs (and copied to a folder)."""
from __future__ import annotations

import os
import tempfile
from typing import Optional, Sequence

from seglab.platform import tracking
from seglab.platform.report.files import runs_csv, to_csv
from seglab.platform.report.plots import write_plots
from seglab.platform.report.rows import collect
from seglab.platform.report.table import comparison_text

def compare(parent_run_ids: Sequence[str], uri: Optional[str] = None, out_dir: Optional[str] = None,
            log: bool = True) -> str:
    """``seglab compare``: the table of the sweeps ``parent_run_ids``, with its pictures and CSVs
    logged under ``compare/`` of every one of their parent runs (and copied to ``out_dir``)."""
    rows = collect(list(parent_run_ids), uri)
    table = comparison_text(rows)
    folders = [out_dir] if out_dir else []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders + [tmp]:
            os.makedirs(folder, exist_ok=True)
            for name, text in (("comparison.md", table + "\n"), ("comparison.csv", to_csv(rows)),
                               ("comparison_runs.csv", runs_csv(rows))):
                with open(os.path.join(folder, name), "w") as f:
                    f.write(text)
            write_plots(rows, folder, uri)
        if log:
            c = tracking.client(uri)
            for parent in parent_run_ids:
                c.log_artifacts(parent, tmp, "compare")
    return table
