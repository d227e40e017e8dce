"""The comparison: rows read back from MLflow, statistics, the table, its findings, files, plots and the MLflow UI.

* :mod:`.rows` -- one row per configuration (all its seeds) of one or several sweeps: scores with intervals,
  the paired Δ vs the baseline, what was selected and what may be claimed;
* :mod:`.stats` -- means with t-intervals and paired differences over seeds (scipy);
* :mod:`.table` -- the comparison as Markdown (caption, columns incl. the methods', legend) and the
  methods' own tables, rendered;
* :mod:`.findings` -- what the comparison does and does not show, and the parent run's honest headline;
* :mod:`.plots` -- learning curves, per-class IoU, mIoU vs GFLOPs;
* :mod:`.files` -- comparison.md / .csv, comparison_runs.csv and the plots, logged to the sweep's parent run;
* :mod:`.ui` -- the comparison where the MLflow UI shows it first (description, grouped view, links);
* :mod:`.compare` -- ``seglab compare`` across sweeps.
"""
from seglab.platform.report.files import log_to_parent
from seglab.platform.report.rows import collect
from seglab.platform.report.table import comparison_text, format_table, markdown_table
from seglab.platform.report.ui import ui_link_line

__all__ = ["collect", "comparison_text", "format_table", "markdown_table", "log_to_parent", "ui_link_line"]
