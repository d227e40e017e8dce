"""``seglab data check``: verify a data set on disk (layout, pairing, label values, corrupt files)."""
from __future__ import annotations

import argparse
import sys

from seglab.errors import ConfigError


class Progress:
    """Progress bars on stderr for ``check_dataset``: tqdm when importable, else a carriage-return bar."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bars: dict = {}
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is usually installed
            tqdm = None
        self.tqdm = tqdm

    def __call__(self, split: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.tqdm is not None:
            bar = self.bars.get(split)
            if bar is None:
                bar = self.bars[split] = self.tqdm(total=total, desc=f"check {split}", unit="img", file=sys.stderr,
                                                   dynamic_ncols=True)
            bar.update(done - bar.n)
            if done >= total:
                bar.close()
            return
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\rcheck {split} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def cmd_data_check(args: argparse.Namespace) -> int:
    from seglab.datasets.check import check_dataset, format_reports, parse_options

    options = parse_options(args.option)
    for key in ("splits", "progress", "workers", "count_labels"):
        if key in options:
            raise ConfigError(f"--option {key}: not a dataset option (see seglab data check --help)")
    progress = Progress(enabled=not args.no_progress)
    try:
        reports = check_dataset(args.dataset, args.root, splits=args.split, progress=progress,
                                workers=args.workers, **options)
    finally:
        progress.close()
    print(format_reports(reports, root=args.root))
    return 1 if any(r.bad for r in reports) else 0
