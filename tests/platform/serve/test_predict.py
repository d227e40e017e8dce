"""`seglab predict`: the label maps it writes are the ones `seglab eval` scores, videos read back with
their frame count, OVeNet's maps are written, and bad input is one line (exit 2) with nothing written.

Models: hrnet_w18_small_v1 / ovenet_hrnet_w18_small_v1 with random weights saved as seglab checkpoints."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from seglab.platform import checkpoint as ckpt
from seglab.platform.cli import main
from tests.metrics.test_metrics_cityscapes import write_fixture


def run_cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def tiny_checkpoint(path: Path, name="hrnet_w18_small_v1", num_classes=12, dataset=None, seed=0):
    from seglab.models import build_model

    torch.manual_seed(seed)
    model = build_model(name, num_classes=num_classes).eval()
    ckpt.save_atomic({"model": model.state_dict(), "num_classes": num_classes,
                      "run": {"model": {"name": name, "pretrained": None}, "dataset": dataset or {"name": "cityscapes11"}},
                      "epoch": 1}, str(path))
    return model


def smooth_images(rng, count, size=(32, 64)):
    """Random images with regions (bilinear up-sampling of a coarse grid), uint8 RGB."""
    out = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3)).astype(np.uint8)
        out.append(cv2.resize(coarse, (size[1], size[0]), interpolation=cv2.INTER_LINEAR))
    return out


@pytest.mark.parametrize("dataset, classes, folder", [("cityscapes11", 12, "labels"), ("cityscapes", 19, "labelIds")])
def test_predict_writes_the_labels_eval_scores(tmp_path, capsys, dataset, classes, folder):
    """Same checkpoint, same options (two scales + flip): `seglab eval CHECKPOINT` and `seglab eval
    --predictions` of what `seglab predict` wrote give the same confusion (every score equal). PHGMM's
    cityscapes11 reads train ids; Cityscapes its official labelIds (scored as cityscapesScripts does)."""
    root = tmp_path / "cs"
    write_fixture(root, tmp_path / "unused", count=2)
    images = sorted((root / "leftImg8bit" / "val").rglob("*.png"))
    for path, image in zip(images, smooth_images(np.random.default_rng(1), len(images))):
        cv2.imwrite(str(path), image[:, :, ::-1])
    tiny_checkpoint(tmp_path / "best.pt", num_classes=classes, dataset={"name": dataset, "eval_resize": False})
    options = ["--scales", "0.75", "1.0", "--flip", "--no-progress"]
    code, _, err = run_cli(["eval", str(tmp_path / "best.pt"), "--dataset", dataset, "--root", str(root),
                            "--split", "val", "--json", str(tmp_path / "model.json"), "--no-mlflow", *options], capsys)
    assert code == 0, err
    code, out, err = run_cli(["predict", str(tmp_path / "best.pt"), str(root / "leftImg8bit" / "val" / "*" / "*.png"),
                              "--out", str(tmp_path / "pred"), "--palette", *options], capsys)
    assert code == 0, err
    assert "2 image(s)" in out
    for sub in ("labels", "overlay", "color"):
        assert sorted(p.name for p in (tmp_path / "pred" / sub).iterdir()) == sorted(p.name for p in images)
    code, _, err = run_cli(["eval", "--predictions", str(tmp_path / "pred" / folder), "--dataset", dataset,
                            "--root", str(root), "--json", str(tmp_path / "files.json"), "--no-progress"], capsys)
    assert code == 0, err
    model, files = (json.loads((tmp_path / f).read_text()) for f in ("model.json", "files.json"))
    assert model["num_images"] == files["num_images"] == 2
    for key in ("miou", "pixel_acc", "mean_acc", "iiou"):
        assert files.get(key) == model.get(key), key
    assert files["per_class_iou"] == model["per_class_iou"]
    # the overlay is the image blended half and half with the colour label map
    image = cv2.imread(str(images[0]))[:, :, ::-1].astype(np.float32)
    colour = cv2.imread(str(tmp_path / "pred" / "color" / images[0].name))[:, :, ::-1].astype(np.float32)
    blend = cv2.imread(str(tmp_path / "pred" / "overlay" / images[0].name))[:, :, ::-1].astype(np.float32)
    assert np.abs(blend - (0.5 * image + 0.5 * colour)).max() <= 1.0


def write_video(path: Path, frames, fps=5.0):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()


def read_video(path: Path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_video_and_frames_come_back_as_videos_with_every_frame(tmp_path, capsys):
    tiny_checkpoint(tmp_path / "best.pt", num_classes=5, dataset={"name": "synthetic"})
    frames = smooth_images(np.random.default_rng(2), 5, size=(64, 96))
    write_video(tmp_path / "clip.mp4", frames)
    (tmp_path / "frames").mkdir()
    for k, frame in enumerate(frames[:3]):
        cv2.imwrite(str(tmp_path / "frames" / f"f{k:03d}.png"), frame[:, :, ::-1])
    code, out, err = run_cli(["predict", str(tmp_path / "best.pt"), str(tmp_path / "clip.mp4"), str(tmp_path / "frames"),
                              "--video", "--out", str(tmp_path / "out"), "--no-progress", "--batch-size", "2"], capsys)
    assert code == 0, err
    clip = read_video(tmp_path / "out" / "clip_overlay.mp4")
    assert len(clip) == len(read_video(tmp_path / "clip.mp4")) == 5
    assert clip[0].shape == (64, 96, 3)
    assert len(read_video(tmp_path / "out" / "frames_overlay.mp4")) == 3
    assert len(list((tmp_path / "out" / "labels").iterdir())) == 3  # the frames' label maps too
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary file left


def test_ovenet_writes_its_offsets_and_confidence(tmp_path, capsys):
    """The method's maps (through its plug-in): the confidence picture is F of one plain forward, coloured."""
    from seglab.platform.viz.flowcolor import confidence_to_color

    model = tiny_checkpoint(tmp_path / "best.pt", "ovenet_hrnet_w18_small_v1", 5, {"name": "synthetic"})
    image = smooth_images(np.random.default_rng(3), 1)[0]
    cv2.imwrite(str(tmp_path / "a.png"), image[:, :, ::-1])
    code, _, err = run_cli(["predict", str(tmp_path / "best.pt"), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                            "--no-progress"], capsys)
    assert code == 0, err
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((image / 255.0 - mean) / std).transpose(2, 0, 1)).float()[None]
    with torch.no_grad():
        confidence = model(x).confidence[0, 0].numpy()
    expected = cv2.resize(confidence_to_color(confidence), (64, 32), interpolation=cv2.INTER_NEAREST)
    got = cv2.imread(str(tmp_path / "o" / "confidence" / "a.png"))[:, :, ::-1]
    assert (got == expected).mean() >= 0.99  # float32 normalisation paths may round one colour bin apart
    assert cv2.imread(str(tmp_path / "o" / "offsets" / "a.png")).shape == (32, 64, 3)


@pytest.mark.parametrize("case, needle", [
    ("bad_image", "image is corrupt or truncated"),
    ("missing_input", "no such file or folder"),
    ("other_architecture", "do not fit model 'hrnet_w18_small_v2'"),
    ("missing_checkpoint", "no such file"),
    ("unknown_type", "unknown file type .txt"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case, needle):
    tiny_checkpoint(tmp_path / "best.pt", num_classes=5, dataset={"name": "synthetic"})
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.zeros((32, 64, 3), np.uint8))
    inputs, checkpoint = [str(good)], str(tmp_path / "best.pt")
    if case == "bad_image":
        (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        inputs.append(str(tmp_path / "bad.png"))
    elif case == "missing_input":
        inputs.append(str(tmp_path / "nope.png"))
    elif case == "other_architecture":
        state = ckpt.load(checkpoint)
        state["run"]["model"]["name"] = "hrnet_w18_small_v2"
        ckpt.save_atomic(state, checkpoint)
    elif case == "missing_checkpoint":
        checkpoint = str(tmp_path / "none.pt")
    else:
        (tmp_path / "notes.txt").write_text("x")
        inputs.append(str(tmp_path / "notes.txt"))
    code, out, err = run_cli(["predict", checkpoint, *inputs, "--out", str(tmp_path / "out"), "--no-progress"], capsys)
    assert code == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("seglab: error: ")
    assert not (tmp_path / "out").exists()
