"""semantic_edges, band and Trimap: hand-drawn maps, scipy dilation and masked ConfusionMatrix
references; Trimap / EMeasure all_reduce over 2 gloo processes."""
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from scipy import ndimage

from seglab.metrics import ConfusionMatrix, EMeasure, Trimap, band, semantic_edges

IGN = 255


def _t(rows):
    return torch.tensor(rows)


# ---------------------------------------------------------------- semantic_edges (8-neighbour rule)


def test_semantic_edges_diagonal_neighbour_counts():
    labels = _t([[0, 0, 0], [0, 0, 0], [0, 0, 1]])
    # (1, 1) touches the 1 at (2, 2) only diagonally and is still an edge; (0, 2) and (2, 0) are
    # two steps away, not edges.
    expected = _t([[0, 0, 0], [0, 1, 1], [0, 1, 1]]).bool()
    assert torch.equal(semantic_edges(labels), expected)


def test_semantic_edges_image_border_adds_no_edges():
    labels = _t([[3, 3, 1, 1]] * 3)
    # only the two columns either side of the 3|1 boundary; the border columns (and rows) stay
    # clear whatever value a padding would hold.
    expected = _t([[0, 1, 1, 0]] * 3).bool()
    assert torch.equal(semantic_edges(labels), expected)
    assert not semantic_edges(torch.full((4, 5), 7)).any()


def test_semantic_edges_void_is_a_label_of_its_own():
    labels = torch.zeros(4, 4, dtype=torch.long)
    labels[1, 1] = IGN
    # the void pixel and its 8 neighbours (all label 0, which differs from void)
    expected = _t([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]).bool()
    assert torch.equal(semantic_edges(labels, ignore_index=IGN), expected)


def test_semantic_edges_batched_equals_per_image():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (3, 4, 5), generator=g).repeat_interleave(2, 1).repeat_interleave(2, 2)
    batched = semantic_edges(labels)
    assert batched.shape == labels.shape and batched.dtype == torch.bool
    for i in range(3):
        assert torch.equal(batched[i], semantic_edges(labels[i]))
    assert torch.equal(semantic_edges(labels.numpy()), batched)


# ---------------------------------------------------------------- band

EDGES = _t([
    [1, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 1, 0],
    [0, 0, 0, 0, 0, 0, 0],
]).bool()
# Chebyshev radius 1 around (0, 0) and (3, 5), clipped at the border (no wrap-around: e.g. (4, 0)
# and (0, 6) stay clear)
BAND2 = _t([
    [1, 1, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 1, 1, 1],
    [0, 0, 0, 0, 1, 1, 1],
    [0, 0, 0, 0, 1, 1, 1],
]).bool()
# radius 2: rows 0-2 x cols 0-2 and rows 1-4 x cols 3-6
BAND3 = _t([
    [1, 1, 1, 0, 0, 0, 0],
    [1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1],
    [0, 0, 0, 1, 1, 1, 1],
    [0, 0, 0, 1, 1, 1, 1],
]).bool()


def test_band_by_hand():
    assert torch.equal(band(EDGES, 1), EDGES)
    assert torch.equal(band(EDGES, 2), BAND2)
    assert torch.equal(band(EDGES, 3), BAND3)
    batched = band(torch.stack([EDGES, BAND2]), 2)
    assert torch.equal(batched[0], BAND2) and torch.equal(batched[1], band(BAND2, 2))


def test_band_matches_scipy_dilation_and_square_max_pool():
    g = torch.Generator().manual_seed(1)
    edges = torch.rand(2, 13, 17, generator=g) < 0.04
    for w in (1, 2, 4, 7, 20):
        k = 2 * w - 1
        got = band(edges, w)
        for i in range(2):
            ref = ndimage.binary_dilation(edges[i].numpy(), structure=np.ones((k, k), bool), border_value=0)
            assert np.array_equal(got[i].numpy(), ref), w
        square = F.max_pool2d(edges[:, None].float(), k, stride=1, padding=w - 1)[:, 0] > 0
        assert torch.equal(got, square)


@pytest.mark.parametrize("width", [0, -2, 1.5, True, "2", None])
def test_band_rejects_bad_width(width):
    with pytest.raises(ValueError, match="width"):
        band(EDGES, width)


def test_band_rejects_non_bool_edges():
    with pytest.raises(ValueError, match="bool"):
        band(EDGES.long(), 2)


# ---------------------------------------------------------------- Trimap

# Hand example: 2 classes, one void pixel at (0, 0) whose prediction (1) must not count.
TARGET = _t([
    [IGN, 0, 0, 1, 1],
    [0, 0, 0, 1, 1],
    [0, 0, 0, 1, 1],
    [0, 0, 0, 1, 1],
])[None]
PRED = _t([
    [1, 0, 1, 1, 1],
    [0, 0, 0, 1, 1],
    [0, 0, 0, 0, 1],
    [1, 0, 0, 1, 1],
])[None]
# Edges (void is its own label): columns 2-3 (the 0|1 boundary) plus (0,1), (1,0), (1,1) next to
# the void pixel. Valid pixels: 19.
# w=1, boundary = 11 valid edge pixels: (0,1) 0->0, (0,2) 0->1 x, (0,3) 1->1, (1,0) 0->0,
#   (1,1) 0->0, (1,2) 0->0, (1,3) 1->1, (2,2) 0->0, (2,3) 1->0 x, (3,2) 0->0, (3,3) 1->1
#   matrix [[6, 1], [1, 3]]: IoU0 = 6/(7+7-6) = 3/4, IoU1 = 3/(4+4-3) = 3/5; error 2/11
# w=1, non-boundary = 8 pixels: (0,4) (1,4) (2,4) (3,4) 1->1, (2,0) (2,1) (3,1) 0->0, (3,0) 0->1 x
#   matrix [[3, 1], [0, 4]]: IoU0 = 3/(4+3-3) = 3/4, IoU1 = 4/(4+5-4) = 4/5
# w=2: only (3,0) is more than 1 step from every edge -> non-boundary [[0, 1], [0, 0]]: both IoUs 0;
#   boundary = all [[9, 2], [1, 7]] minus it = [[9, 1], [1, 7]]: IoU0 = 9/11, IoU1 = 7/9; error 2/18
# w=3: every valid pixel is in the band: boundary [[9, 2], [1, 7]]: IoU0 = 9/12, IoU1 = 7/10,
#   error 3/19; the non-boundary subset is empty -> NaN
EXPECTED = {
    1: dict(boundary=[0.75, 0.6], nonboundary=[0.75, 0.8], error=2 / 11, pixels=(11, 8)),
    2: dict(boundary=[9 / 11, 7 / 9], nonboundary=[0.0, 0.0], error=1 / 9, pixels=(18, 1)),
    3: dict(boundary=[0.75, 0.7], nonboundary=[math.nan, math.nan], error=3 / 19, pixels=(19, 0)),
}


def _nan_eq(a, b):
    return all((math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12) for x, y in zip(a, b))


def test_trimap_by_hand():
    tm = Trimap(2, widths=(1, 2, 3), ignore_index=IGN)
    tm.update(PRED, TARGET)
    assert tm.counts.shape == (3, 2, 2, 2) and tm.counts.dtype == torch.int64
    assert tm.counts[0].tolist() == [[[6, 1], [1, 3]], [[3, 1], [0, 4]]]
    r = tm.compute()
    assert list(r) == [1, 2, 3]
    for w, e in EXPECTED.items():
        assert _nan_eq(r[w]["boundary_per_class_iou"], e["boundary"]), w
        assert _nan_eq(r[w]["nonboundary_per_class_iou"], e["nonboundary"]), w
        assert r[w]["boundary_miou"] == pytest.approx(sum(e["boundary"]) / 2, rel=1e-12)
        assert r[w]["boundary_pixel_error"] == pytest.approx(e["error"], rel=1e-12)
        assert r[w]["boundary_pixel_acc"] == pytest.approx(1 - e["error"], rel=1e-12)
        assert (r[w]["boundary_pixels"], r[w]["nonboundary_pixels"]) == e["pixels"]
    assert r[1]["nonboundary_miou"] == pytest.approx(0.775, rel=1e-12)
    assert r[2]["nonboundary_miou"] == 0.0
    assert math.isnan(r[3]["nonboundary_miou"]) and math.isnan(r[3]["nonboundary_pixel_acc"])


def _blocky(g, b, c, void=0.1):
    """(b, 12, 16) label maps made of 4x4 blocks, with some void pixels."""
    t = torch.randint(0, c, (b, 3, 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    t[torch.rand(t.shape, generator=g) < void] = IGN
    return t


def _noisy(g, target, c):
    pred = target.clone()
    flip = (torch.rand(target.shape, generator=g) < 0.3) | (target == IGN)
    pred[flip] = torch.randint(0, c, (int(flip.sum()),), generator=g)
    return pred


def test_trimap_equals_masked_confusion_matrices():
    g = torch.Generator().manual_seed(2)
    c, widths = 4, (1, 2, 3, 6)
    target = _blocky(g, 3, c)
    pred = _noisy(g, target, c)
    tm = Trimap(c, widths=widths)
    tm.update(pred, target)
    edges = semantic_edges(target).numpy()
    for i, w in enumerate(widths):
        k = 2 * w - 1
        inside = np.stack([ndimage.binary_dilation(e, structure=np.ones((k, k), bool)) for e in edges])
        for j, subset in enumerate((inside, ~inside)):
            ref = ConfusionMatrix(c)
            ref.update(pred, torch.where(torch.from_numpy(subset), target, IGN))
            assert torch.equal(tm.counts[i, j], ref.matrix), (w, j)


def test_trimap_streaming_equals_one_batch():
    g = torch.Generator().manual_seed(3)
    targets = [_blocky(g, 2, 3), _blocky(g, 1, 3)]
    preds = [_noisy(g, t, 3) for t in targets]
    streamed = Trimap(3)
    for p, t in zip(preds, targets):
        streamed.update(p, t)
    once = Trimap(3)
    once.update(torch.cat(preds), torch.cat(targets))
    assert torch.equal(streamed.counts, once.counts)
    assert streamed.widths == (1, 2, 3, 5, 7, 10, 15, 20)
    streamed.reset()
    assert streamed.counts.sum() == 0


def test_trimap_never_counts_ignored_pixels():
    g = torch.Generator().manual_seed(4)
    target = _blocky(g, 2, 3, void=0.3)
    pred = _noisy(g, target, 3)
    tm = Trimap(3, widths=(1, 4))
    tm.update(pred, target)
    valid = int((target != IGN).sum())
    # every width splits exactly the valid pixels between the two subsets
    assert tm.counts.sum(dim=(1, 2, 3)).tolist() == [valid, valid]
    other = pred.clone()
    other[target == IGN] = (other[target == IGN] + 1) % 3  # change the predictions at void only
    tm2 = Trimap(3, widths=(1, 4))
    tm2.update(other, target)
    assert torch.equal(tm.counts, tm2.counts)
    tm.all_reduce()  # torch.distributed not initialised: no-op
    assert torch.equal(tm.counts, tm2.counts)


def test_trimap_logits_equal_ids():
    g = torch.Generator().manual_seed(5)
    target = _blocky(g, 2, 4)
    logits = torch.randn(2, 4, 6, 8, generator=g)
    tm = Trimap(4, widths=(1, 3))
    tm.update(logits, target)
    ids = Trimap(4, widths=(1, 3))
    ids.update(F.interpolate(logits, size=(12, 16), mode="bilinear", align_corners=False).argmax(1), target)
    assert torch.equal(tm.counts, ids.counts)


def test_trimap_means_run_over_the_reported_classes_only():
    # Two identical rows of [0, 0, 1, 1, 2, 2]: the edges (w = 1 band) are columns 1-4, the
    # non-boundary pixels columns 0 and 5. Prediction [0, 2, 1, 1, 2, 1] per row.
    # band: label [0, 1, 1, 2] vs pred [2, 1, 1, 2] -> IoU class 0 = 0, class 1 = 2/2, class 2 = 1/2
    # rest: label [0, 2] vs pred [0, 1]             -> IoU class 0 = 1, class 1 = 0 (FP), class 2 = 0
    # Class 0 (a background a data set leaves out, miou_classes = [1, 2]) scores the opposite of the others.
    target = torch.tensor([[[0, 0, 1, 1, 2, 2]] * 2])
    pred = torch.tensor([[[0, 2, 1, 1, 2, 1]] * 2])
    tm = Trimap(3, widths=(1,))
    tm.update(pred, target)
    reported = tm.compute(classes=[1, 2])[1]
    assert reported["boundary_miou"] == pytest.approx((1.0 + 0.5) / 2, rel=1e-12)
    assert reported["nonboundary_miou"] == 0.0
    assert reported["boundary_per_class_iou"] == pytest.approx([0.0, 1.0, 0.5], rel=1e-12)  # lists: all C
    assert reported["boundary_pixel_error"] == pytest.approx(2 / 8, rel=1e-12)  # a pixel quantity: unchanged
    every = tm.compute()[1]  # default: all classes
    assert every["boundary_miou"] == pytest.approx(1.5 / 3, rel=1e-12)
    assert every["nonboundary_miou"] == pytest.approx(1 / 3, rel=1e-12)
    with pytest.raises(ValueError, match=r"classes \[3\]"):
        tm.compute(classes=[1, 3])


@pytest.mark.parametrize("widths", [(), [0, 1], [2, -1], [1.5], [True, 2], [2, 2], 3, "12", [None]])
def test_trimap_rejects_bad_widths(widths):
    with pytest.raises(ValueError, match="widths"):
        Trimap(3, widths=widths)


def test_trimap_accepts_numpy_int_widths():
    assert Trimap(3, widths=np.array([3, 1])).widths == (3, 1)


# ---------------------------------------------------------------- all_reduce over 2 processes

C = 4


def _rank_data(rank):
    g = torch.Generator().manual_seed(50 + rank)
    target = _blocky(g, 2 + rank, C)
    return _noisy(g, target, C), target


def _worker(rank, world_size, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        tm, em = Trimap(C, widths=(1, 3)), EMeasure(C)
        for metric in (tm, em):
            metric.update(*_rank_data(rank))
            metric.all_reduce()
        torch.save((tm.counts, em.score_sum, em.image_count), os.path.join(out_dir, f"reduced{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_trimap_and_emeasure_all_reduce_two_processes(tmp_path, monkeypatch):
    world = 2
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[__name__.count(".")]))
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    tm, em = Trimap(C, widths=(1, 3)), EMeasure(C)
    locals_ = []
    for rank in range(world):
        local = Trimap(C, widths=(1, 3))
        local.update(*_rank_data(rank))
        locals_.append(local.counts)
        for metric in (tm, em):
            metric.update(*_rank_data(rank))
    assert not torch.equal(locals_[0], locals_[1])
    for rank in range(world):
        counts, score_sum, image_count = torch.load(tmp_path / f"reduced{rank}.pt")
        assert torch.equal(counts, tm.counts) and torch.equal(image_count, em.image_count)
        assert torch.allclose(score_sum, em.score_sum, rtol=1e-13, atol=0)
