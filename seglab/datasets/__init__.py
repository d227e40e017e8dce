"""Data sets: a registry of dataset factories and the built-in ones.

``build_dataset(name, split, **kwargs)`` returns a ``torch.utils.data.Dataset`` whose items are
``(image float32 (3, H, W) normalised, label int64 (H, W) in 0..num_classes-1 or 255)`` and which
has the attributes ``num_classes``, ``class_names``, ``palette``, ``ignore_index`` and ``len()``,
optionally ``flip_permutation`` (a data set with left/right classes: ``p[c]`` = the class ``c``
becomes in the mirror image; its training flip and ``seglab eval --flip`` both use it; absent or
None: no such classes) and ``evaluation_item(i)`` (sample ``i`` for evaluation, ``None`` for a bad
sample that ``on_bad_sample=skip`` leaves out; see :mod:`seglab.datasets.eval_items`).

A new data set registers a factory taking ``split`` plus keyword options::

    @register_dataset("mine")
    def mine(split="train", root="data/mine", crop_size=None, augment=True): ...
"""
from __future__ import annotations

import os

# albumentations otherwise checks PyPI for a newer version on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import inspect  # noqa: E402
from typing import Any, Callable, List, Optional  # noqa: E402

from seglab.errors import ConfigError  # noqa: E402
from seglab.registry import Registry  # noqa: E402

DATASETS = Registry("dataset")


def register_dataset(name: Optional[str] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a dataset factory ``factory(split=..., **options) -> Dataset``."""
    return DATASETS.register(name)


def list_datasets() -> List[str]:
    """Names of the registered data sets, sorted."""
    return DATASETS.list()


def accepted_keys(factory: Callable[..., Any]) -> Optional[List[str]]:
    """Keyword names ``factory`` accepts besides ``split`` (``None``: it takes ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and p.name != "split"]


def build_dataset(name: str, split: str = "train", **kwargs: Any):
    """Build the registered data set ``name`` for ``split`` with options ``kwargs``.

    Unknown names raise ``UnknownNameError`` (a ``ConfigError`` listing the valid names); unknown
    option keys and bad values raise ``ConfigError`` naming the key (``dataset.<key>``).
    """
    factory = DATASETS.get(name)
    accepted = accepted_keys(factory)
    if accepted is not None:
        unknown = sorted(k for k in kwargs if k not in accepted)
        if unknown:
            raise ConfigError(
                f"unknown key dataset.{unknown[0]} for dataset '{name}'; "
                f"allowed keys: split, {', '.join(accepted)}"
            )
    return factory(split=split, **kwargs)


# Built-in data sets (imported last: they register themselves with DATASETS).
from seglab.datasets import synthetic  # noqa: E402,F401
from seglab.datasets import acdc, ade20k, cityscapes, helen, reduced, synthia, voc  # noqa: E402,F401
from seglab.datasets import synthetic11  # noqa: E402,F401

__all__ = ["DATASETS", "register_dataset", "build_dataset", "list_datasets"]
