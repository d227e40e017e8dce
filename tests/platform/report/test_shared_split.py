"""With ``dataset.selection_fraction=null`` and no test split, the checkpoint is chosen on the split
the scores are reported on: the caption, the findings, the claim tag and the MLflow description
all say so -- and say nothing of the kind when the splits differ."""
import pytest

from seglab.platform import report, tracking
from seglab.platform.report.findings import SHARED_SPLIT, findings
from seglab.platform.report.ui import NOTE_TAG
from tests.platform.report.test_report import _sweep, _trial, store  # noqa: F401  (the fixture)


@pytest.mark.parametrize("selection,shared", [("val", True), ("train (held-out 10% by file name)", False)])
def test_selection_on_the_report_split_is_said_everywhere(store, selection, shared):  # noqa: F811
    exp, parent = _sweep(store, seeds=1)
    c = tracking.client(store)
    for label, group, base in (("hrnet", "g-base", True), ("ovenet", "g-ovenet", False)):
        run_id = _trial(store, exp, parent, label, group, 0, baseline=base, val=(0.5, 0.6), test=0.55 + 0.01 * base)
        c.set_tag(run_id, "seglab.selection_split", selection)
        c.set_tag(run_id, "seglab.report_split", "val")
    rows = report.collect(parent, store)
    table = report.format_table(rows)
    caption = table.splitlines()[0]
    assert (SHARED_SPLIT in caption) is shared
    said = [f for f in findings(rows) if SHARED_SPLIT in f]
    assert len(said) == int(shared) and (not shared or "(val)" in said[0])
    report.log_to_parent(parent, rows, table, store)
    tags = c.get_run(parent).data.tags
    assert (SHARED_SPLIT in tags[NOTE_TAG]) is shared
    assert tags["seglab.claim"].startswith("single configuration")
    assert (SHARED_SPLIT in tags["seglab.claim"]) is shared
