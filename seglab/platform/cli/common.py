"""What every ``seglab`` command shares: the one-line argparse error (exit 2) and argument types."""
from __future__ import annotations

import argparse
import re
import sys
from typing import Tuple


class Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every seglab command: ``seglab: error: ...``, exit 2
    (argparse's default prints its usage line first)."""

    def error(self, message: str):  # type: ignore[override]
        message = re.sub(r"^argument (\S+): \1 ", r"\1 ", message)  # "argument --size: --size must ..."
        print(f"seglab: error: {message} (see `{self.prog} --help`)", file=sys.stderr, flush=True)
        sys.exit(2)


def hw_type(flag: str, example: str):
    """An argparse ``type`` for ``HxW`` with positive integers -> ``(H, W)``; errors name ``flag``."""
    def parse(text: str) -> Tuple[int, int]:
        try:
            h, w = (int(v) for v in text.lower().split("x"))
            if h <= 0 or w <= 0:
                raise ValueError
            return h, w
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be HxW with positive integers, e.g. {example} (got {text!r})")

    return parse


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 (got {text!r})")
    return value


def add_official_checkpoint_args(p: argparse.ArgumentParser) -> None:
    """--model / --num-classes: what an official checkpoint does not record (``seglab predict``, ``export``)."""
    p.add_argument("--model", metavar="NAME", help="the architecture of an official checkpoint (see `seglab models`)")
    p.add_argument("--num-classes", type=positive, default=None, help="classes of an official checkpoint (default 19)")
