"""``seglab predict``: a model's label maps, colour overlays and method maps for images, folders and videos.

Every image goes through the model's evaluation preprocessing (:attr:`Loaded.mean` / ``std``, the
run's evaluation resize) and :func:`seglab.metrics.inference.predict_probs` with the
:class:`~seglab.metrics.InferenceConfig` that ``seglab eval`` builds from the same flags
(:func:`seglab.platform.evaluation.checkpoint.inference_config`): one inference code path, so the
label maps written here are the ones ``seglab eval`` scores. Images of one size are batched
(``batch_size``; on the GPU when there is one).

Written under ``out`` (each file through a temporary file and a rename: nothing half-written):

* ``labels/<name>.png``: train ids ``0..C-1`` (8-bit; 16-bit above 256 classes), the size of the
  input, the format ``seglab eval --predictions out/labels`` reads;
* ``labelIds/<name>.png``: for a Cityscapes model also its official label ids (what ``seglab eval
  --predictions out/labelIds --dataset cityscapes`` and cityscapesScripts read);
* ``overlay/<name>.png``: the image blended with the class colours (``alpha``);
* ``color/<name>.png``: the colour label map (with a palette asked for);
* ``<map>/<name>.png``: a method's maps (OVeNet: ``offsets``, ``confidence``), from one plain forward;
* a video, or a folder of frames with ``--video``: ``<name>_overlay.mp4`` (the overlay frames, the
  input's frame rate; OpenCV's FFmpeg writer, codec mp4v).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from seglab.errors import ConfigError
from seglab.platform.serve.inputs import Job
from seglab.platform.serve.source import Loaded

LABELS, OVERLAY, COLOR, LABEL_IDS = "labels", "overlay", "color", "labelIds"
VIDEO_FPS = 10.0  # a folder of frames has no frame rate of its own


def preprocess(loaded: Loaded, image: np.ndarray) -> torch.Tensor:
    """An ``(H, W, 3)`` uint8 RGB image -> the model's input ``(3, h, w)`` (the evaluation transform)."""
    from seglab.datasets.transforms import build_eval_transform

    transform = getattr(loaded, "_transform", None) or build_eval_transform(loaded.mean, loaded.std, loaded.base_size)
    setattr(loaded, "_transform", transform)
    return transform(image)[0]


def label_maps(loaded: Loaded, images: Sequence[np.ndarray], config: Any, device: torch.device) -> np.ndarray:
    """Train-id maps ``(B, H, W)`` of ``images`` (one size), at the images' size."""
    from seglab.metrics import predict_probs

    batch = torch.stack([preprocess(loaded, im) for im in images]).to(device)
    with torch.no_grad():
        probs = predict_probs(loaded.model, batch, config)
    size = images[0].shape[:2]
    if tuple(probs.shape[-2:]) != tuple(size):  # an evaluation resize: back to the file's size
        probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
    return probs.argmax(1).cpu().numpy()


def overlay(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    from seglab.datasets.labels import colorize

    colours = colorize(labels, palette).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colours * alpha + 0.5).clip(0, 255).astype(np.uint8)


def write_png(path: Path, array: np.ndarray) -> None:
    """An ``(H, W)`` label map (8/16-bit) or an ``(H, W, 3)`` RGB image, atomically."""
    import cv2

    from seglab.platform.checkpoint import atomic_file

    data = array if array.ndim == 2 else np.ascontiguousarray(array[:, :, ::-1])
    ok, buf = cv2.imencode(".png", data)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    with atomic_file(str(path)) as f:
        f.write(buf.tobytes())


class Predictor:
    """What one ``seglab predict`` call writes, image by image (see the module docstring)."""

    def __init__(self, loaded: Loaded, config: Any, device: torch.device, out: Path, method: Any = None,
                 palette: Optional[Sequence[Sequence[int]]] = None, write_color: bool = False,
                 alpha: float = 0.5) -> None:
        self.loaded, self.config, self.device, self.out = loaded, config, device, out
        self.method, self.write_color, self.alpha = method, write_color, alpha
        self.palette = list(palette or loaded.palette)
        self.dtype = np.uint8 if loaded.num_classes <= 256 else np.uint16
        self.written = 0

    def labels(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return label_maps(self.loaded, images, self.config, self.device)

    def write(self, name: str, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Write one image's files; returns its overlay."""
        write_png(self.out / LABELS / f"{name}.png", labels.astype(self.dtype))
        if self.loaded.label_ids is not None:  # Cityscapes: also its result format, for cityscapesScripts
            write_png(self.out / LABEL_IDS / f"{name}.png", np.asarray(self.loaded.label_ids, np.uint8)[labels])
        blend = overlay(image, labels, self.palette, self.alpha)
        write_png(self.out / OVERLAY / f"{name}.png", blend)
        if self.write_color:
            from seglab.datasets.labels import colorize

            write_png(self.out / COLOR / f"{name}.png", colorize(labels, self.palette))
        for suffix, picture in self.method_maps(image).items():
            write_png(self.out / suffix / f"{name}.png", resize_rgb(picture, image.shape[:2]))
        self.written += 1
        return blend

    def method_maps(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        if self.method is None:
            return {}
        x = preprocess(self.loaded, image)[None].to(self.device)
        with torch.no_grad():
            out = self.loaded.model(x)
        return self.method.prediction_maps(out, x.shape[-2:])


def resize_rgb(picture: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    import cv2

    if picture.shape[:2] == tuple(size):
        return picture
    return cv2.resize(picture, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def batches(paths: Sequence[Path], batch_size: int) -> Iterator[List[Tuple[Path, np.ndarray]]]:
    """Decoded images in order, grouped into runs of one size of at most ``batch_size``."""
    from seglab.datasets.files import read_image

    group: List[Tuple[Path, np.ndarray]] = []
    for path in paths:
        try:
            image = read_image(str(path))
        except ValueError as error:  # BadSampleError
            raise ConfigError(f"INPUT {error}") from None
        if group and (len(group) >= batch_size or group[0][1].shape != image.shape):
            yield group
            group = []
        group.append((path, image))
    if group:
        yield group


def predict_images(p: Predictor, job: Job, batch_size: int, tick: Callable[[], None]) -> Optional[Path]:
    """A job of image files (and, for a folder of frames, its overlay video)."""
    writer = VideoOut(p.out / f"{job.video}_overlay.mp4", VIDEO_FPS) if job.video else None
    try:
        for group in batches(job.images, batch_size):
            maps = p.labels([im for _, im in group])
            for (path, image), labels in zip(group, maps):
                blend = p.write(path.stem, image, labels)
                if writer is not None:
                    writer.add(blend)
                tick()
        return writer.finish() if writer is not None else None
    finally:
        if writer is not None:
            writer.abort()


def predict_video(p: Predictor, job: Job, batch_size: int, tick: Callable[[], None]) -> Path:
    """A video file -> ``<name>_overlay.mp4`` with the overlay of every frame."""
    import cv2

    capture = cv2.VideoCapture(str(job.source))
    if not capture.isOpened():
        raise ConfigError(f"INPUT {job.source}: does not open as a video (corrupt, or a codec FFmpeg lacks)")
    fps = capture.get(cv2.CAP_PROP_FPS) or VIDEO_FPS
    writer = VideoOut(p.out / f"{job.video}_overlay.mp4", fps)
    try:
        frames: List[np.ndarray] = []
        while True:
            ok, frame = capture.read()
            if ok:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if frames and (not ok or len(frames) >= batch_size):
                for image, labels in zip(frames, p.labels(frames)):
                    writer.add(overlay(image, labels, p.palette, p.alpha))
                    tick()
                frames = []
            if not ok:
                break
        if writer.count == 0:
            raise ConfigError(f"INPUT {job.source}: no frame decodes")
        return writer.finish()
    finally:
        capture.release()
        writer.abort()


class VideoOut:
    """An mp4 written to a temporary file next to ``path`` and renamed when complete."""

    def __init__(self, path: Path, fps: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=str(path.parent))
        os.close(fd)
        self.path, self.tmp, self.fps, self.count, self.writer = path, tmp, float(fps), 0, None

    def add(self, rgb: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            self.size = (rgb.shape[1], rgb.shape[0])
            self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self.writer.isOpened():
                raise ConfigError(f"--out: OpenCV cannot write an mp4 video to {self.path}")
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise ConfigError(f"INPUT: the frames of {self.path.stem} differ in size ({self.size[0]}x{self.size[1]} "
                              f"then {rgb.shape[1]}x{rgb.shape[0]}); a video needs one size")
        self.writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        self.count += 1

    def finish(self) -> Path:
        self.writer.release()
        self.writer = None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
