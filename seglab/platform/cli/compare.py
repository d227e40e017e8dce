"""``seglab compare``: the comparison table of one or several sweeps (the latest by default), with plots."""
from __future__ import annotations

import argparse
import os

from seglab.errors import ConfigError


def cmd_compare(args: argparse.Namespace) -> int:
    """The comparison table of one or several sweeps, with its plots logged to their parent runs."""
    from seglab.platform import tracking
    from seglab.platform.report.compare import compare

    uri = tracking.tracking_uri()
    store = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None
    if store is not None and not os.path.isfile(store):  # do not create an empty store just to read it
        raise ConfigError(f"no MLflow store at {store} (MLFLOW_TRACKING_URI, or SEGLAB_HOME/mlflow.db); "
                          f"run a sweep first, e.g. `make demo`")
    parents = list(args.parent_run_id or [])
    if not parents:
        client = tracking.client(uri)
        exp = client.get_experiment_by_name(args.experiment)
        if exp is None:
            raise ConfigError(f"no MLflow experiment '{args.experiment}' in {uri}")
        runs = client.search_runs([exp.experiment_id], filter_string="tags.`seglab.kind` = 'sweep'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise ConfigError(f"experiment '{args.experiment}' has no sweep yet; run `make demo`")
        parents = [runs[0].info.run_id]
    else:
        from mlflow.exceptions import MlflowException

        for parent in parents:
            try:
                run = tracking.client(uri).get_run(parent)
            except MlflowException:
                raise ConfigError(f"no MLflow run '{parent}' in {uri}; give sweeps' parent run ids "
                                  f"(or none for the latest sweep of --experiment)") from None
            if run.data.tags.get("seglab.kind") != "sweep":
                raise ConfigError(f"MLflow run '{parent}' is not a sweep's parent run (tag seglab.kind="
                                  f"{run.data.tags.get('seglab.kind')}); give a sweep's parent run id")
    table = compare(parents, uri, out_dir=args.out, log=not args.no_log)
    print(f"sweep run{'s' if len(parents) > 1 else ''} {', '.join(parents)}\n")
    print(table)
    if not args.no_log:
        print(f"\nplots and tables logged under compare/ of the parent run{'s' if len(parents) > 1 else ''}"
              + (f"; copies in {args.out}" if args.out else ""))
    return 0
