"""`seglab eval`: predictions mode against cityscapesScripts, checkpoint mode end to end with a
real SQLite MLflow store, and the one-line errors (exit 2)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from seglab.platform import checkpoint as ckpt
from seglab.platform.cli import main
from tests.metrics.test_metrics_cityscapes import cityscapes_reference, write_fixture
from tests.conftest import new_mlflow_store

MODEL = {"name": "hrnet_w18_small_v1", "pretrained": None}


def run_cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's errors (seglab's parser: one line, exit 2)
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def test_predictions_mode_equals_cityscapes_scripts(tmp_path, capsys, monkeypatch):
    gts, preds = write_fixture(tmp_path / "cs", tmp_path / "results")
    out_json = tmp_path / "scores.json"
    code, out, err = run_cli(["eval", "--predictions", str(tmp_path / "results"), "--dataset", "cityscapes",
                              "--root", str(tmp_path / "cs"), "--split", "val", "--json", str(out_json)], capsys)
    assert code == 0, err
    ref = cityscapes_reference(gts, preds, monkeypatch)
    got = json.loads(out_json.read_text())
    assert got["miou"] == pytest.approx(ref["averageScoreClasses"], rel=1e-12)
    assert got["iiou"] == pytest.approx(ref["averageScoreInstClasses"], rel=1e-12)
    assert got["category_miou"] == pytest.approx(ref["averageScoreCategories"], rel=1e-12)
    assert got["category_iiou"] == pytest.approx(ref["averageScoreInstCategories"], rel=1e-12)
    for name, iou in got["per_class_iou"].items():
        ref_iou = ref["classScores"][name]
        assert (iou is None and math.isnan(ref_iou)) or iou == pytest.approx(ref_iou, rel=1e-12)
    assert 0 <= got["pixel_acc"] <= 1 and 0 <= got["mean_acc"] <= 1
    # the table shows the headline in percent and one row per class
    assert f"{100 * ref['averageScoreClasses']:.2f}" in out and "category iIoU" in out
    assert "eval" in err  # the progress bar went to stderr


@pytest.mark.parametrize("argv, needle", [
    (["--predictions", "{tmp}/missing", "--dataset", "cityscapes", "--root", "{tmp}/cs"], "missing is not a directory"),
    (["--predictions", "{tmp}/results", "--dataset", "nosuch", "--root", "{tmp}/cs"], "--dataset: unknown dataset 'nosuch'"),
    (["--predictions", "{tmp}/results", "--dataset", "cityscapes", "--root", "{tmp}/nowhere"], "--root: expected"),
    (["--predictions", "{tmp}/results", "--dataset", "cityscapes", "--root", "{tmp}/cs", "--flip"], "--flip needs a model"),
    (["ck.pt", "--scales", "1.0", "abc"], "--scales must be numbers > 0"),
    (["ck.pt", "--scales", "-1"], "--scales must be numbers > 0"),
    (["ck.pt", "--slide", "--crop", "0x4"], "--crop must be HxW"),
    (["{tmp}/none.pt"], "none.pt: no such file"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, needle):
    write_fixture(tmp_path / "cs", tmp_path / "results", count=2)
    code, out, err = run_cli(["eval", "--no-progress"] + [a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("seglab: error: ") and needle in lines[0], err


def test_missing_and_wrong_size_predictions_are_named(tmp_path, capsys):
    _, preds = write_fixture(tmp_path / "cs", tmp_path / "results", count=2)
    Path(preds[1]).unlink()
    argv = ["eval", "--no-progress", "--predictions", str(tmp_path / "results"), "--dataset", "cityscapes",
            "--root", str(tmp_path / "cs")]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "no prediction for" in err and Path(preds[1]).name.split("_pred")[0] in err
    import cv2

    cv2.imwrite(preds[1], np.zeros((8, 8), np.uint8))
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and f"{preds[1]} is 8x8 but its ground truth" in err and "64x32" in err


def _tiny_checkpoint(path: Path, num_classes: int, dataset: dict, run_id=None, seed=0) -> torch.nn.Module:
    from seglab.models import build_model

    torch.manual_seed(seed)
    model = build_model(MODEL["name"], num_classes=num_classes).eval()
    run = {"model": dict(MODEL), "dataset": dataset}
    ckpt.save_atomic({"model": model.state_dict(), "num_classes": num_classes, "class_names": [],
                      "run": run, "mlflow_run_id": run_id, "epoch": 1}, str(path))
    return model


def _confusion_scores(model, ds, num_classes):
    """Independent float64 recomputation: plain forward, logits resized to the label, argmax."""
    m = np.zeros((num_classes, num_classes), np.float64)
    with torch.no_grad():
        for i in range(len(ds)):
            image, label = ds[i]
            logits = model(image[None]).logits
            logits = torch.nn.functional.interpolate(logits, size=label.shape, mode="bilinear", align_corners=False)
            pred = logits.argmax(1)[0].numpy()
            lab = label.numpy()
            valid = lab != 255
            np.add.at(m, (lab[valid], pred[valid]), 1)
    tp = np.diag(m)
    union = m.sum(0) + m.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou)), float(tp.sum() / m.sum()), iou


def test_checkpoint_mode_end_to_end_with_mlflow(tmp_path, capsys, monkeypatch):
    import mlflow  # noqa: F401  (the platform's tracking store)

    from seglab.datasets import build_dataset
    from seglab.platform import tracking

    uri = new_mlflow_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEGLAB_HOME", str(tmp_path))
    experiment_id = tracking.ensure_experiment("evaltest", uri)
    trial = tracking.client(uri).create_run(experiment_id, run_name="trial-0", tags={"seglab.kind": "trial"})
    dataset = {"name": "synthetic", "image_size": [64, 96], "seed": 3,
               "train": {"num_samples": 4, "augment": True, "crop_size": [64, 96]},
               "val": {"num_samples": 2}, "test": {"num_samples": 3}}
    model = _tiny_checkpoint(tmp_path / "best.pt", 9, dataset, run_id=trial.info.run_id)
    out_json = tmp_path / "eval.json"
    code, out, err = run_cli(["eval", str(tmp_path / "best.pt"), "--json", str(out_json)], capsys)
    assert code == 0, err
    got = json.loads(out_json.read_text())
    # default split: the run's report split (test), built with the run's options
    ds = build_dataset("synthetic", split="test", num_samples=3, image_size=[64, 96], seed=3, augment=False)
    miou, pixel_acc, iou = _confusion_scores(model, ds, 9)
    assert got["split"] == "test" and got["num_images"] == 3
    assert got["miou"] == pytest.approx(miou, rel=1e-12) and got["pixel_acc"] == pytest.approx(pixel_acc, rel=1e-12)
    for name, value in zip(ds.class_names, iou):
        assert (got["per_class_iou"][name] is None) == math.isnan(value)
    assert "mIoU" in out and f"{100 * miou:.2f}" in out
    # the MLflow evaluation run: tagged, linked to the trial, in the trial's experiment, same numbers
    client = tracking.client(uri)
    runs = client.search_runs([experiment_id], filter_string="tags.`seglab.kind` = 'evaluation'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["seglab.evaluates"] == trial.info.run_id
    assert run.data.metrics["miou"] == pytest.approx(miou, rel=1e-12)
    assert run.data.metrics["pixel_acc"] == pytest.approx(pixel_acc, rel=1e-12)
    assert run.data.params["split"] == "test" and run.info.status == "FINISHED"
    assert run.info.run_id in out


def test_checkpoint_mode_on_cityscapes_equals_its_predictions_scored_by_cityscapes_scripts(tmp_path, capsys,
                                                                                         monkeypatch):
    """Multi-scale + flip on the Cityscapes fixture: the CLI's scores equal cityscapesScripts' scores
    of the label-id PNGs of the same predictions (written here with predict_probs)."""
    import cv2

    from seglab.datasets import build_dataset
    from seglab.metrics import InferenceConfig, predict_probs
    from seglab.metrics.cityscapes import train_ids_to_label_ids

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SEGLAB_HOME", str(tmp_path))  # no store there: nothing is logged
    gts, _ = write_fixture(tmp_path / "cs", tmp_path / "unused", count=2)
    model = _tiny_checkpoint(tmp_path / "cs.pt", 19, {"name": "cityscapes", "root": "/elsewhere",
                                                      "train": {"crop_size": [32, 32]}}, seed=1)
    out_json = tmp_path / "cs.json"
    code, out, err = run_cli(["eval", str(tmp_path / "cs.pt"), "--root", str(tmp_path / "cs"), "--split", "val",
                              "--scales", "0.5", "1.0", "--flip", "--slide", "--json", str(out_json)], capsys)
    assert code == 0, err
    assert "slide 32x32 stride 21x21" in out
    ds = build_dataset("cityscapes", split="val", root=str(tmp_path / "cs"), augment=False)
    config = InferenceConfig(scales=(0.5, 1.0), flip=True, crop=(32, 32))
    preds = []
    for i, sample in enumerate(ds.samples):
        image, _ = ds[i]
        train_ids = predict_probs(model, image[None], config).argmax(1)[0].numpy()
        path = tmp_path / "pred" / f"{Path(sample.label).name.replace('gtFine_labelIds', 'pred')}"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), train_ids_to_label_ids()[train_ids].astype(np.uint8))
        preds.append(str(path))
    ref = cityscapes_reference(sorted(gts), sorted(preds), monkeypatch)
    got = json.loads(out_json.read_text())
    assert got["miou"] == pytest.approx(ref["averageScoreClasses"], rel=1e-12)
    assert got["category_miou"] == pytest.approx(ref["averageScoreCategories"], rel=1e-12)
    for key, ref_key in (("iiou", "averageScoreInstClasses"), ("category_iiou", "averageScoreInstCategories")):
        assert (got[key] is None and math.isnan(ref[ref_key])) or got[key] == pytest.approx(ref[ref_key], rel=1e-12)


def test_predictions_mode_train_ids_for_other_data_sets(tmp_path, capsys):
    """cityscapes11 (PHGMM's reduction): PNGs of train ids named after the image; mIoU over its
    11 reported classes (not background), recomputed here in float64."""
    import cv2

    from seglab.datasets import build_dataset

    write_fixture(tmp_path / "cs", tmp_path / "unused", count=3)
    ds = build_dataset("cityscapes11", split="val", root=str(tmp_path / "cs"), augment=False)
    c = int(ds.num_classes)
    rng = np.random.default_rng(5)
    m = np.zeros((c, c))
    (tmp_path / "pred").mkdir()
    for i, sample in enumerate(ds.samples):
        label = ds.load_label(i).astype(np.int64)
        pred = np.where(rng.random(label.shape) < 0.7, np.minimum(label, c - 1), rng.integers(0, c, label.shape))
        cv2.imwrite(str(tmp_path / "pred" / f"{Path(sample.image).stem}.png"), pred.astype(np.uint8))
        valid = label != 255
        np.add.at(m, (label[valid], pred[valid]), 1)
    tp = np.diag(m)
    union = m.sum(0) + m.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    keep = ds.miou_classes
    out_json = tmp_path / "s.json"
    code, out, err = run_cli(["eval", "--no-progress", "--predictions", str(tmp_path / "pred"), "--dataset",
                              "cityscapes11", "--root", str(tmp_path / "cs"), "--json", str(out_json)], capsys)
    assert code == 0, err
    got = json.loads(out_json.read_text())
    assert keep is not None and len(keep) == 11
    assert got["miou"] == pytest.approx(float(np.nanmean(iou[keep])), rel=1e-12)
    assert got["pixel_acc"] == pytest.approx(tp.sum() / m.sum(), rel=1e-12)
    assert "iiou" not in got and "means over 11 classes" in out
    # a value outside the train ids is named
    first = tmp_path / "pred" / f"{Path(ds.samples[0].image).stem}.png"
    cv2.imwrite(str(first), np.full((32, 64), 200, np.uint8))
    code, _, err = run_cli(["eval", "--no-progress", "--predictions", str(tmp_path / "pred"), "--dataset",
                            "cityscapes11", "--root", str(tmp_path / "cs")], capsys)
    assert code == 2 and "holds values [200]" in err and f"train ids 0..{c - 1}" in err


def test_flip_uses_the_data_sets_left_right_permutation(tmp_path, capsys, monkeypatch):
    """`seglab eval --flip` on HELEN with a face model that knows left from right (the model is
    swapped in for the checkpoint's at predict_probs): the flip must not change any class's IoU."""
    from seglab import metrics
    from seglab.datasets.fixtures.helen import write_helen
    from seglab.datasets.helen import HELEN
    from tests.metrics.test_metrics_inference import FaceSides

    write_helen(tmp_path / "helen", splits={"val": 2})
    _tiny_checkpoint(tmp_path / "best.pt", 11, {"name": "helen", "root": str(tmp_path / "helen")})
    real, configs = metrics.predict_probs, []

    def face_model(model, images, config):
        configs.append(config)
        return real(FaceSides().eval(), images, config)

    monkeypatch.setattr(metrics, "predict_probs", face_model)
    got = {}
    for flags in ([], ["--flip"]):
        out_json = tmp_path / f"scores{len(flags)}.json"
        code, _, err = run_cli(["eval", str(tmp_path / "best.pt"), "--root", str(tmp_path / "helen"), "--split", "val",
                                "--no-progress", "--no-mlflow", "--json", str(out_json)] + flags, capsys)
        assert code == 0, err
        got[bool(flags)] = json.loads(out_json.read_text())
    plain, flipped = got[False], got[True]
    assert plain["per_class_iou"]["right eyebrow"] > 0 and plain["per_class_iou"]["right eye"] > 0
    assert flipped["miou"] == pytest.approx(plain["miou"], rel=1e-12)
    for name, iou in plain["per_class_iou"].items():
        assert flipped["per_class_iou"][name] == pytest.approx(iou, rel=1e-12, abs=1e-12), name
    assert configs[-1].flip and configs[-1].flip_permutation is HELEN.flip_permutation  # one declaration


def test_checkpoint_mode_leaves_a_bad_image_out(tmp_path, capsys, monkeypatch):
    """`seglab eval -o on_bad_sample=skip` with one corrupt val image: the scores are those of the
    two good images (worked out by hand), the skipped image is counted, no image is scored twice."""
    from seglab import metrics
    from tests.platform.evaluation.test_bad_samples import AllSkin, expected_matrix, write_bad_val_split

    root = write_bad_val_split(tmp_path / "helen")
    _tiny_checkpoint(tmp_path / "best.pt", 11, {"name": "helen", "root": str(root)})
    real = metrics.predict_probs
    monkeypatch.setattr(metrics, "predict_probs", lambda model, images, config: real(AllSkin(), images, config))
    out_json = tmp_path / "scores.json"
    code, out, err = run_cli(["eval", str(tmp_path / "best.pt"), "--root", str(root), "--split", "val", "-o",
                              "on_bad_sample=skip", "--no-progress", "--no-mlflow", "--json", str(out_json)], capsys)
    assert code == 0, err
    got = json.loads(out_json.read_text())
    m = expected_matrix()  # every pixel predicted skin: pixel acc = skin pixels / all pixels of images 0 and 2
    assert got["pixel_acc"] == pytest.approx(m[1, 1] / m.sum(), rel=1e-12)
    assert got["per_class_iou"]["hair"] == 0.0
    assert got["num_images"] == 2 and got["skipped_samples"] == 1
    assert "1 skipped" in out
    from seglab.platform.evaluation.results import metric_names

    assert metric_names({**got, "per_class": {}})["skipped_samples"] == 1.0
