"""Evaluation at each image's true size: a split whose images differ in size (VOC-like 375x500,
500x375, 333x500) batched with ``collate_evaluation`` runs in same-size groups, in one process and
over 2 gloo workers, and scores what an independent numpy recomputation from per-image predictions
gives (the default collate raised ``stack expects each tensor to be equal size``)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader

from seglab.models.outputs import SegOutput

SIZES = [(375, 500), (500, 375), (333, 500), (375, 500)]
CLASSES = 3


class VariableSizes(torch.utils.data.Dataset):
    def __len__(self):
        return len(SIZES)

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        h, w = SIZES[i]
        label = torch.randint(0, CLASSES, (h, w), generator=g)
        label[: h // 10] = 255  # an ignored band, as VOC's boundary
        return torch.rand(3, h, w, generator=g), label


class FullResNet(nn.Module):
    """Logits at the input's resolution (nothing resampled: the reference needs no interpolation)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, CLASSES, 3, padding=1)

    def forward(self, x):
        return SegOutput(logits=self.conv(x), output_stride=1)


def _validate(rank, world):
    from seglab.datasets.eval_items import collate_evaluation
    from seglab.platform.evaluation import EvalContext, SegmentationEvaluator, evaluate, validation_shard

    ctx = EvalContext(CLASSES, 255, ["a", "b", "c"], [(0, 0, 0)] * CLASSES, torch.device("cpu"))
    loader = DataLoader(validation_shard(VariableSizes(), rank, world), batch_size=2, collate_fn=collate_evaluation)
    evaluator = SegmentationEvaluator(ctx)
    metrics = evaluate(FullResNet(), loader, [evaluator], torch.device("cpu"))
    return {"miou": metrics["val_miou"], "acc": metrics["val_pixel_acc"],
            "matrix": evaluator.matrix.matrix.cpu().numpy().astype(np.int64).tolist()}


def _reference():
    """Per-image predictions, confusion matrix and mIoU by numpy in float64."""
    model, ds = FullResNet().eval(), VariableSizes()
    matrix = np.zeros((CLASSES, CLASSES), np.int64)
    for i in range(len(ds)):
        image, label = ds[i]
        with torch.no_grad():
            pred = model(image[None]).logits[0].argmax(0).numpy()
        y = label.numpy()
        keep = y != 255
        matrix += np.bincount(y[keep] * CLASSES + pred[keep], minlength=CLASSES ** 2).reshape(CLASSES, CLASSES)
    tp = np.diag(matrix).astype(np.float64)
    iou = tp / (matrix.sum(0) + matrix.sum(1) - tp)
    return matrix, float(iou.mean()), float(tp.sum() / matrix.sum())


def _worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        Path(out_dir, f"r{rank}.json").write_text(json.dumps(_validate(rank, world)))
    finally:
        dist.destroy_process_group()


def test_images_of_different_sizes_score_as_per_image_inference(tmp_path):
    matrix, miou, acc = _reference()
    single = _validate(0, 1)
    assert np.array_equal(np.array(single["matrix"]), matrix)
    assert single["miou"] == pytest.approx(miou, rel=1e-9)
    assert single["acc"] == pytest.approx(acc, rel=1e-9)
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for r in range(2):
        sharded = json.loads((tmp_path / f"r{r}.json").read_text())
        assert sharded["matrix"] == single["matrix"]
        assert sharded["miou"] == pytest.approx(single["miou"], rel=1e-12)


def test_collate_keeps_each_size():
    from seglab.datasets.eval_items import collate_evaluation
    from seglab.platform.evaluation.loop import size_groups

    ds = VariableSizes()
    images, labels, indices, skipped = collate_evaluation([(*ds[i], i) for i in range(4)] + [(None, None, 9)])
    assert skipped == 1 and isinstance(images, list)
    groups = size_groups(images, labels, indices.tolist())
    assert [(tuple(g[0].shape), g[2]) for g in groups] == [((2, 3, 375, 500), [0, 3]), ((1, 3, 500, 375), [1]),
                                                           ((1, 3, 333, 500), [2])]
    assert all(torch.equal(g[0][k], ds[i][0]) for g in groups for k, i in enumerate(g[2]))


def test_a_voc_root_with_images_of_different_sizes_scores_at_true_size(tmp_path):
    """The VOC loader at true sizes (500x375, 375x500, 500x333; 255 boundary): the evaluation loop's
    confusion matrix equals one from the label PNGs on disk and per-image predictions, in numpy."""
    from PIL import Image

    from seglab.datasets import build_dataset
    from seglab.datasets.eval_items import collate_evaluation
    from seglab.datasets.fixtures.voc import write_voc2012
    from seglab.platform.evaluation import EvalContext, SegmentationEvaluator, evaluate, validation_shard

    voc = write_voc2012(tmp_path, {"train": 1, "val": 3}, sizes=[(375, 500), (500, 375), (333, 500)], aug_only=0,
                        augmented=False)
    ds = build_dataset("voc2012", split="val", root=str(tmp_path), augment=False, augmented=False)
    torch.manual_seed(0)
    model = nn.Conv2d(3, 21, 3, padding=1)
    net = lambda x: SegOutput(logits=model(x), output_stride=1)  # noqa: E731
    ctx = EvalContext(21, 255, list(ds.class_names), list(ds.palette), torch.device("cpu"))
    loader = DataLoader(validation_shard(ds, 0, 1), batch_size=3, collate_fn=collate_evaluation)
    evaluator = SegmentationEvaluator(ctx)
    evaluate(model, loader, [evaluator], torch.device("cpu"), forward=lambda m, x: net(x))
    matrix = np.zeros((21, 21), np.int64)
    stems = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    for i, stem in enumerate(stems):
        y = np.array(Image.open(voc / "SegmentationClass" / f"{stem}.png")).astype(np.int64)
        with torch.no_grad():
            pred = net(ds[i][0][None]).logits[0].argmax(0).numpy()
        assert pred.shape == y.shape  # each image at its own size
        keep = y != 255
        matrix += np.bincount(y[keep] * 21 + pred[keep], minlength=21 * 21).reshape(21, 21)
    assert {np.array(Image.open(voc / "SegmentationClass" / f"{s}.png")).shape for s in stems} == \
        {(375, 500), (500, 375), (333, 500)}
    assert np.array_equal(evaluator.matrix.matrix.cpu().numpy().astype(np.int64), matrix)
