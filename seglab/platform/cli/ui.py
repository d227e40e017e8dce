"""``seglab ui``: the first screen -- the MLflow UI links of the latest sweep, opened where a browser exists.

    seglab ui [--experiment NAME] [--sweep RUN_ID] [--open | --no-browser] [--wait S]

Prints the links of the latest sweep of ``--experiment`` (or of ``--sweep``): its comparison (the sweep
run's description), its trial runs grouped by configuration, the compare view
(:func:`seglab.platform.report.ui.ui_link_line`), and the registered model when the sweep registered
one. Every link carries ``workflowType=machine_learning``: MLflow 3.17.2 has no server-side default
for the experiment page's mode (its ``server-info`` says nothing of it), so the URL is what opens an
experiment on its runs rather than the GenAI Traces overview. Without a sweep, the experiment's runs.

``make ui`` runs this with ``--wait`` in the background next to ``mlflow ui``: it waits until the UI
answers, then prints the links and opens the first in a browser when there is a display (``--open``
forces it, ``--no-browser`` never).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from typing import List, Optional

from seglab.errors import ConfigError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("ui", help="the MLflow UI links of the latest sweep (opened in a browser where one exists)",
                       description=__doc__.split("\n\n", 2)[2].split("\n\n")[0])
    p.add_argument("--experiment", default="seglab", help="the experiment whose latest sweep to show (default seglab)")
    p.add_argument("--sweep", metavar="RUN_ID", help="this sweep's parent run instead of the latest")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="first wait up to S seconds for the UI to answer (make ui starts it at the same time)")
    p.add_argument("--open", dest="browser", action="store_const", const=True, default=None,
                   help="open the first link in a browser (default: when a display exists)")
    p.add_argument("--no-browser", dest="browser", action="store_const", const=False, help="print only")
    p.set_defaults(func=cmd_ui)
    return p


def latest_sweep(experiment: str, uri: str) -> Optional[str]:
    from seglab.platform import tracking

    exp = tracking.client(uri).get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = tracking.client(uri).search_runs([exp.experiment_id], filter_string="tags.`seglab.kind` = 'sweep'",
                                            order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def wait_for(base: str, seconds: float) -> bool:
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        if time.time() > deadline:
            return False
        time.sleep(0.5)


def links(args: argparse.Namespace, uri: str, base: str) -> List[str]:
    """The lines to print: the sweep's links, else the experiment's runs, else the UI's root."""
    from seglab.platform import tracking
    from seglab.platform.report import ui

    sweep = args.sweep or latest_sweep(args.experiment, uri)
    if sweep is None:
        exp = tracking.client(uri).get_experiment_by_name(args.experiment)
        if exp is None:
            return [f"MLflow UI: {base} (no experiment '{args.experiment}' yet: run a sweep, e.g. `make demo`)"]
        return [f"MLflow UI: {base}", f"  experiment '{args.experiment}' (no sweep yet): {ui.experiment_url(base, exp.experiment_id)}"]
    try:
        text = ui.ui_link_line(sweep, uri, base)
    except Exception:  # MlflowException: no such run
        raise ConfigError(f"--sweep {sweep}: no such MLflow run in {uri}") from None
    lines = [line for line in text.splitlines() if not line.startswith("MLflow UI")]
    lines = [f"MLflow UI: {base} -- the latest sweep ({sweep}):"] + lines
    model = tracking.client(uri).get_run(sweep).data.tags.get("seglab.registered_model")
    if model:
        lines.append(f"  its registered model: {model}  (seglab predict {model} IMAGES --out DIR)")
    return lines


def has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_ui(args: argparse.Namespace) -> int:
    from seglab.platform import tracking
    from seglab.platform.report import ui

    uri = tracking.tracking_uri()
    store = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None
    base = ui.tracking_ui(uri)
    if args.wait > 0 and not wait_for(base, args.wait):
        print(f"seglab ui: the MLflow UI at {base} did not answer within {args.wait:g} s", file=sys.stderr)
    if store is not None and not os.path.isfile(store):
        lines = [f"MLflow UI: {base} (no store at {store} yet: run a sweep, e.g. `make demo`)"]
    else:
        lines = links(args, uri, base)
    print("\n".join(lines), flush=True)
    first = next((w for line in lines for w in line.split() if w.startswith("http") and "#/" in w), None)
    if first and (args.browser if args.browser is not None else has_display()):
        import webbrowser

        webbrowser.open(first)
    return 0
