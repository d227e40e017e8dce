"""Shared plumbing of the experiment scripts: Hydra config -> plain dicts -> seglab.platform.

Every script ends with ``run_hydra(main)``: a user error anywhere (Hydra's own ones included: an
unknown config name such as ``model=nope``, an unknown key, an override that does not parse, a
bad command-line flag) prints one line ``seglab: error: ...`` on stderr and exits with status 2,
before anything is started.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seglab.errors import ConfigError
from seglab.platform.quiet import quiet

quiet()

CONF = Path(__file__).resolve().parent / "conf"
HYDRA_SYNTAX = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def split_config(cfg: DictConfig) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(base run dict, sweep dict): Hydra stops here, the platform gets plain values."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:  # e.g. an interpolation ${...} that does not resolve
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"{key + ': ' if key else ''}{_first_line(exc)}") from None
    assert isinstance(container, dict)
    sweep = container.pop("sweep", {}) or {}
    cluster = container.pop("cluster", None)  # where the sweep runs (experiments/conf/cluster/)
    if cluster is not None:
        sweep["cluster"] = cluster
    return container, sweep


def fail(error: ConfigError) -> NoReturn:
    """One line for a user error, no traceback; exit status 2."""
    message = " ".join(str(error).split("\n"))
    print(f"seglab: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def run_entry(cfg: DictConfig) -> None:
    """Body of every sweep script: validate (dry run) or run the sweep, print the comparison."""
    from seglab.platform.sweep.plan import describe_protocol
    from seglab.platform.sweep import SweepConfig, plan_trials, run_sweep, validate_sweep

    try:
        base, sweep_dict = split_config(cfg)
        sweep = SweepConfig.from_dict(sweep_dict)
        if sweep.dry_run:
            runs = plan_trials(base, sweep)
            for run, s in zip(runs, validate_sweep(base, sweep, runs)):
                print(f"{run.label}{'  [baseline]' if run.baseline else ''}: {s.params / 1e6:.2f}M params, "
                      f"{s.gflops:.1f} GFLOPs")
            if sweep.search == "optuna":
                print(f"+ {sweep.num_samples} run(s) proposed by Optuna over {', '.join(sorted(sweep.space))}")
            print(describe_protocol(sweep, runs))
            return
        result = run_sweep(base, sweep)
    except ConfigError as error:
        fail(error)
    print("\n" + result.table, flush=True)
    print(f"\nMLflow: parent run {result.parent_run_id}; open the UI with `make ui` "
          f"(experiment '{sweep.experiment}').", flush=True)
    if result.errors:
        print("failed trials:\n  " + "\n  ".join(result.errors), file=sys.stderr, flush=True)
        sys.exit(1)


# ------------------------------------------------------------------------- Hydra's errors, one line
def run_hydra(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function on the command line (``sys.argv``).

    Hydra reports its own errors (a config-group miss lists every option on its own line, an
    unknown key suggests ``+key``) in several lines and exits 1. Here they are raised instead
    (``HYDRA_FULL_ERROR=1`` while Hydra runs) and turned into the one line every other user error
    gets, exit status 2. Hydra's features (``+key=``, ``~key``, ``--cfg job``, ``--help``) are
    untouched. With ``HYDRA_FULL_ERROR=1`` set by the user, Hydra's exceptions propagate as they are.
    """
    argv = sys.argv[1:]
    debug = os.environ.get("HYDRA_FULL_ERROR") == "1"
    if not debug:
        _check_flags(argv)
    saved = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except Exception as exc:
        from hydra.errors import HydraException

        if debug or not isinstance(exc, HydraException):
            raise
        fail(ConfigError(hydra_error_message(exc, argv)))
    finally:
        if saved is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved


def _check_flags(argv: List[str]) -> None:
    """Parse ``argv`` with Hydra's own argument parser, with a one-line error (an unknown flag
    such as ``--cfgg`` would otherwise print argparse's usage line too)."""
    try:
        from hydra._internal.utils import get_args_parser
    except ImportError:  # pragma: no cover - a Hydra without it: Hydra reports flags itself
        return
    parser = get_args_parser()

    def error(message: str) -> NoReturn:
        fail(ConfigError(f"{message} (see --help; overrides are key=value, e.g. trainer.epochs=2)"))

    parser.error = error  # type: ignore[method-assign]
    try:
        parser.parse_args(argv)
    except argparse.ArgumentError as exc:  # pragma: no cover - exit_on_error is on
        error(str(exc))


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _group_options(group: str) -> List[str]:
    folder = CONF / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _override_of(key: str, argv: List[str]) -> Optional[str]:
    """The command-line override of ``key`` (``key=...``, ``+key=...``, ``++key=...``), if any."""
    for arg in argv:
        name, sep, _ = arg.partition("=")
        if sep and name.lstrip("+~") == key:
            return arg
    return None


def _unparsable(argv: List[str]) -> Optional[Tuple[str, str]]:
    """(the first override Hydra cannot parse, its parser's message)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for arg in argv:
        if arg.startswith("-"):
            continue
        try:
            parser.parse_override(arg)
        except HydraException as exc:
            return arg, _parse_detail(exc)
    return None


def _parse_detail(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Error parsing override", "See https://"))]
    return lines[0] if lines else "not key=value"


def hydra_error_message(exc: BaseException, argv: List[str]) -> str:
    """One line for a Hydra exception, naming the override or key and what is allowed."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        group, _, name = exc.missing_cfg_file.rpartition("/")
        if not group:  # --config-name nope
            valid = ", ".join(sorted(p.stem for p in CONF.glob("*.yaml")))
            return f"unknown primary config '{name}' (--config-name); valid: {valid}"
        options = list(exc.options or []) or _group_options(group)
        given = _override_of(group, argv) or f"{group}={name}"
        return f"unknown {group} '{name}' ({given}); valid {group} names: {', '.join(options) or '-'}"
    if isinstance(exc, OverrideParseException):
        bad = _unparsable(argv)
        if bad is not None:
            return f"cannot parse override '{bad[0]}': {bad[1]} (syntax: {HYDRA_SYNTAX})"
        return f"cannot parse the overrides: {_parse_detail(exc)} (syntax: {HYDRA_SYNTAX})"
    cause = exc.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and getattr(cause, "full_key", None):
        key = str(cause.full_key)
        parent = getattr(cause, "parent_node", None)
        allowed = sorted(str(k) for k in parent.keys()) if isinstance(parent, DictConfig) and len(parent) else []
        parent_key = key.rpartition(".")[0]
        if allowed:
            given = _override_of(key, argv)
            add = f" (a key the config does not list is added with +{given})" if given else ""
            return f"unknown key {key}; allowed {parent_key + ' ' if parent_key else ''}keys: {', '.join(allowed)}{add}"
        return f"unknown key {key}" + (f" ({parent_key} is a value, not a group of keys)" if parent_key else "")
    lines = []
    for line in str(exc).splitlines():
        if line.startswith("Config search path"):
            break
        if line.strip():
            lines.append(line.strip())
    if isinstance(cause, Exception):
        lines.append(_first_line(cause))
    return " ".join(lines) or type(exc).__name__
