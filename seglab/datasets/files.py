"""Files of an on-disk data set: reading images and labels (one-line errors naming the file), checking a
file for truncation, the layout's directories, and pairing images with their label files."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from seglab.errors import ConfigError


class BadSampleError(ValueError):
    """A sample that cannot be used: the message is one line naming the file and the problem."""


class MissingSplitError(ConfigError):
    """The image directory of a split does not exist (the data set may simply not include it).

    Raised by :func:`require_split_dir`; ``seglab data check`` skips such splits when it walks
    every split of a root, and reports the first of them when none exists at all."""


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a directory, else ConfigError naming it: ``dataset.root: expected <what> at <path>``."""
    if not path.is_dir():
        raise ConfigError(f"dataset.root: expected {what} at {path} (not found); check dataset.root and the layout")
    return path


def require_split_dir(path: Path, what: str) -> Path:
    """Like :func:`require_dir` for the image directory of one split; raises :class:`MissingSplitError`."""
    if not path.is_dir():
        raise MissingSplitError(f"dataset.root: expected {what} at {path} (not found); "
                                f"check dataset.root, dataset.split and the layout")
    return path


def _imread(path: str, flags: int, kind: str) -> np.ndarray:
    """``cv2.imread`` that raises BadSampleError naming ``path`` (missing, or not decodable)."""
    data = cv2.imread(path, flags)
    if data is None:
        if not os.path.exists(path):
            raise BadSampleError(f"{path}: {kind} file is missing")
        raise BadSampleError(f"{path}: {kind} does not decode (corrupt or truncated file?)")
    return data


def read_image(path: str) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3)`` uint8 RGB array; BadSampleError if it does not decode."""
    return cv2.cvtColor(_imread(path, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)


def read_label_file(path: str) -> np.ndarray:
    """Decode a label file unchanged (8/16-bit, 1/3 channels); BadSampleError if it does not decode."""
    return _imread(path, cv2.IMREAD_UNCHANGED, "label")


def check_file_intact(path: str) -> Tuple[int, int]:
    """``(H, W)`` of an image file from its header, after checking the whole file for corruption.

    Pillow's ``verify`` walks every chunk (PNG CRCs, JPEG markers) without decoding pixels, so a
    truncated or corrupted file is found at a fraction of the cost of decoding it.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            im.verify()
    except FileNotFoundError:
        raise BadSampleError(f"{path}: image file is missing") from None
    except Exception as exc:  # Pillow raises many types (SyntaxError, OSError, struct.error...)
        raise BadSampleError(f"{path}: image is corrupt or truncated ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    return height, width


def pair_by_suffix(images: Sequence[Path], image_suffix: str, label_dir_of: Callable[[Path], Path],
                   label_suffix: str, skipped: Optional[List[str]] = None) -> List[Tuple[Path, Path]]:
    """Pair ``<stem><image_suffix>`` files with ``label_dir_of(image)/<stem><label_suffix>``.

    A missing label raises ConfigError naming the image and the label file it expected; when a
    list ``skipped`` is given (``on_bad_sample="skip"``) that message is appended to it instead and
    the image is left out.
    """
    pairs = []
    for image in images:
        stem = image.name[: -len(image_suffix)] if image.name.endswith(image_suffix) else image.stem
        label = label_dir_of(image) / f"{stem}{label_suffix}"
        if not label.is_file():
            message = f"dataset: image {image} has no label; expected {label}"
            if skipped is None:
                raise ConfigError(message)
            skipped.append(message)
            continue
        pairs.append((image, label))
    return pairs
