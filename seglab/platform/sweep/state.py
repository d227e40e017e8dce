"""A sweep's folder and its state file (``sweep.json``): what ``sweep.resume`` continues.

The file records the sweep's MLflow parent run, its store, its configuration (flattened to dotted
keys: :func:`fingerprint`) and its status. ``sweep.resume=true`` picks the latest unfinished folder
of the sweep's name; a resumed sweep must have the same configuration (except the keys in
:data:`RESUME_FREE_KEYS`) and the same MLflow store, else one line says what differs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from seglab.errors import ConfigError, check
from seglab.platform.checkpoint import write_text_atomic
from seglab.platform.config import flatten
from seglab.platform.sweep.config import SweepConfig

SWEEP_STATE = "sweep.json"
"""The file in a sweep's folder recording its MLflow parent run, configuration and status (for ``sweep.resume``)."""
# Keys that may differ when a sweep is resumed (they do not change what the trials compute).
RESUME_FREE_KEYS = ("resume", "dry_run", "max_concurrent_trials")


def fingerprint(base: Dict[str, Any], sweep: SweepConfig) -> Dict[str, Any]:
    """What must be equal for a sweep to be resumed: the base run and the sweep, flattened to dotted keys."""
    blob = {**{f"run.{k}": v for k, v in flatten(base).items()},
            **{f"sweep.{k}": v for k, v in flatten(sweep.__dict__).items() if k.split(".")[0] not in RESUME_FREE_KEYS}}
    return json.loads(json.dumps(blob, default=str))


def write_state(folder: Path, state: Dict[str, Any]) -> None:
    write_text_atomic(str(folder / SWEEP_STATE), json.dumps(state, indent=1, sort_keys=True) + "\n")


def find_resumable(root: Path, base: Dict[str, Any], sweep: SweepConfig, uri: str
                   ) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """``sweep.resume``: the sweep folder to continue and its recorded state, or None (a new sweep).

    ``true`` picks the latest folder of this sweep's name under ``root`` that did not finish;
    a path names the folder. The configuration must equal the interrupted one (except
    ``sweep.resume``/``dry_run``/``max_concurrent_trials``), and so must the MLflow store, else a
    one-line ConfigError before anything starts.
    """
    if sweep.resume is False:
        return None
    if sweep.resume is True:
        candidates = []
        for f in root.glob(f"{sweep.name}-*/{SWEEP_STATE}"):
            try:
                state = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if state.get("name") == sweep.name and state.get("status") != "FINISHED":
                candidates.append((f.stat().st_mtime, f.parent, state))
        check(bool(candidates), f"sweep.resume=true: no interrupted run of sweep '{sweep.name}' under {root} "
                                f"(a finished sweep is not resumed; drop sweep.resume to start a new one)")
        _, folder, state = max(candidates, key=lambda c: c[0])
    else:
        folder = Path(str(sweep.resume)).expanduser().resolve()
        check((folder / SWEEP_STATE).is_file(), f"sweep.resume={sweep.resume}: not a sweep folder (no {SWEEP_STATE} "
                                                f"in {folder}); give true or a folder under {root}")
        try:
            state = json.loads((folder / SWEEP_STATE).read_text())
        except ValueError as exc:
            raise ConfigError(f"sweep.resume: {folder / SWEEP_STATE} is not valid JSON ({exc})") from None
        check(state.get("status") != "FINISHED", f"sweep.resume={sweep.resume}: that sweep finished; nothing to resume")
    old, new = state.get("config") or {}, fingerprint(base, sweep)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    check(not changed, f"sweep.resume: {folder} ran with another configuration ({', '.join(changed[:4])}"
                       f"{' ...' if len(changed) > 4 else ''} differ); rerun with the same overrides")
    check(state.get("tracking_uri") == uri, f"sweep.resume: {folder} logged to MLflow at {state.get('tracking_uri')}, "
                                            f"not {uri}; set MLFLOW_TRACKING_URI to it")
    return folder, state
