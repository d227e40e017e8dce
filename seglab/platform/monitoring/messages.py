"""The monitoring room's lines on stderr: ``seglab: <text>``, some of them once per process."""
from __future__ import annotations

import sys
import threading
from typing import Any

_SAID: set = set()  # what this process has said once already
_SAID_LOCK = threading.Lock()


def say(text: str) -> None:
    """One line on stderr, ``seglab: <text>``."""
    print(f"seglab: {text}", file=sys.stderr, flush=True)


def say_once(key: Any, text: str) -> None:
    """:func:`say` ``text`` unless something with the same ``key`` was said in this process."""
    with _SAID_LOCK:
        if key in _SAID:
            return
        _SAID.add(key)
    say(text)


def forget_said() -> None:
    """Let every once-only line be said again (a fresh process; tests)."""
    with _SAID_LOCK:
        _SAID.clear()
