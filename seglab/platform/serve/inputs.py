"""``seglab predict``'s INPUT arguments -> the images and videos to predict, checked before any output.

An INPUT is an image file, a folder (its images, not recursive, sorted by name), a glob pattern
(``'data/*.jpg'``, quoted) or a video file. With ``--video`` a folder is a sequence of frames and is
also written back as one overlay video. Anything else (a missing file, a glob that matches nothing,
an unknown extension, two inputs with one name) is one line naming it.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from seglab.errors import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass
class Job:
    """One unit of output: a list of image files (``video`` None), a folder of frames written back as
    a video (``video`` = its name), or a video file (``source`` set, ``images`` empty)."""

    images: List[Path]
    video: Optional[str] = None
    source: Optional[Path] = None


def images_in(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def expand(inputs: Sequence[str], frames_as_video: bool = False) -> List[Job]:
    """The jobs of ``inputs`` (see the module docstring); ConfigError for anything that is not one."""
    singles: List[Path] = []
    jobs: List[Job] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found = images_in(path)
            if not found:
                raise ConfigError(f"INPUT {text}: a folder with no images ({', '.join(IMAGE_EXTENSIONS)})")
            if frames_as_video:
                jobs.append(Job(found, video=path.resolve().name))
            else:
                singles += found
        elif path.is_file():
            ext = path.suffix.lower()
            if ext in VIDEO_EXTENSIONS:
                jobs.append(Job([], video=path.stem, source=path))
            elif ext in IMAGE_EXTENSIONS:
                singles.append(path)
            else:
                raise ConfigError(f"INPUT {text}: unknown file type {ext or '(none)'}; images "
                                  f"{', '.join(IMAGE_EXTENSIONS)} or videos {', '.join(VIDEO_EXTENSIONS)}")
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text) if Path(p).suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ConfigError(f"INPUT {text}: the pattern matches no image")
            singles += found
        else:
            raise ConfigError(f"INPUT {text}: no such file or folder")
    if singles:
        jobs.insert(0, Job(singles))
    check_unique(jobs)
    return jobs


def check_unique(jobs: Sequence[Job]) -> None:
    """Outputs are named after their inputs: two inputs with one name would overwrite each other."""
    seen = {}
    for job in jobs:
        names = [p.stem for p in job.images] if job.video is None else [job.video]
        for name, path in zip(names, job.images or [job.source]):
            if name in seen and seen[name] != path:
                raise ConfigError(f"INPUT {path}: its output name '{name}' is also {seen[name]}'s; predict them "
                                  f"into separate --out folders")
            seen[name] = path


def check_readable(paths: Sequence[Path]) -> None:
    """Every image's header decodes and its file is whole (Pillow's verify): one line for the first
    that does not, before anything is written."""
    from seglab.datasets.files import check_file_intact

    for path in paths:
        if not os.access(path, os.R_OK):
            raise ConfigError(f"INPUT {path}: cannot be read (permission denied)")
        try:
            check_file_intact(str(path))
        except ValueError as error:  # BadSampleError
            raise ConfigError(f"INPUT {error}") from None
