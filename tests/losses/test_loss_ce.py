"""The ``ce`` loss: hand-computed values, upsampling, ignore handling."""
import math

import pytest
import torch
import torch.nn.functional as F

from seglab.losses import LossOutput, build_loss, pixel_cross_entropy
from seglab.models.outputs import SegOutput


def _ce_hand(z, label):
    """-log softmax(z)[label], with math only."""
    return math.log(sum(math.exp(v) for v in z)) - z[label]


def test_ce_hand_computed_with_ignore():
    # logits (1, 2 classes, 2, 2); channel 0 / channel 1 per pixel
    c0 = [[1.0, 2.0], [0.5, -1.0]]
    c1 = [[0.0, 0.5], [1.5, 3.0]]
    logits = torch.tensor([[c0, c1]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[[0, 1], [255, 1]]])
    expected = (
        _ce_hand([1.0, 0.0], 0)  # pixel (0,0), label 0
        + _ce_hand([2.0, 0.5], 1)  # pixel (0,1), label 1
        + _ce_hand([-1.0, 3.0], 1)  # pixel (1,1), label 1; pixel (1,0) is ignored
    ) / 3
    loss = build_loss("ce")(SegOutput(logits=logits), target)
    assert isinstance(loss, LossOutput)
    assert loss.total.item() == pytest.approx(expected, rel=1e-6)
    assert set(loss.terms) == {"loss"}
    assert loss.terms["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert not loss.terms["loss"].requires_grad
    # and against torch's own criterion
    ref = F.cross_entropy(logits, target, ignore_index=255)
    assert loss.total.item() == pytest.approx(ref.item(), rel=1e-6)
    loss.total.backward()
    assert torch.all(logits.grad[0, :, 1, 0] == 0)  # the ignored pixel gets no gradient
    assert torch.all(logits.grad[0, :, 0, 0] != 0)


def test_ce_upsamples_bilinear_align_corners_false_by_hand():
    # class-0 logits [0, 4] along the width, class 1 all 0. Bilinear (align_corners=False) to width
    # 4 samples source x = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1): [0, 1, 3, 4]
    # (align_corners=True would give [0, 4/3, 8/3, 4]; nearest [0, 0, 4, 4]).
    logits = torch.tensor([[[[0.0, 4.0]], [[0.0, 0.0]]]])
    target = torch.zeros(1, 1, 4, dtype=torch.long)
    expected = sum(_ce_hand([z, 0.0], 0) for z in [0.0, 1.0, 3.0, 4.0]) / 4
    assert pixel_cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_ce_upsampled_matches_torch_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, 6, generator=g)
    target = torch.randint(0, 5, (2, 16, 24), generator=g)
    target[0, :3] = 255
    target[1, 5:9, 2:20] = 255
    up = F.interpolate(logits, size=(16, 24), mode="bilinear", align_corners=False)
    ref = F.cross_entropy(up, target, ignore_index=255)
    out = build_loss("ce")(SegOutput(logits=logits), target)
    assert out.total.item() == pytest.approx(ref.item(), rel=1e-5)


def test_ce_constant_low_res_logits_hand():
    z = [2.0, -1.0, 0.5]
    logits = torch.tensor(z).view(1, 3, 1, 1)
    target = torch.tensor([[[0, 1, 2], [2, 255, 1], [255, 255, 0]]])
    labels = [0, 1, 2, 2, 1, 0]
    expected = sum(_ce_hand(z, t) for t in labels) / len(labels)
    assert pixel_cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_ce_configurable_ignore_index():
    logits = torch.tensor([[[[1.0, 2.0]], [[0.0, 0.5]]]])
    target = torch.tensor([[[0, 7]]])  # 7 is the ignore label here; 255 is not used
    loss = build_loss("ce", ignore_index=7)(SegOutput(logits=logits), target)
    assert loss.total.item() == pytest.approx(_ce_hand([1.0, 0.0], 0), rel=1e-6)


def test_ce_all_ignore_is_zero_with_grad():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 8, 8), 255, dtype=torch.long)
    loss = build_loss("ce")(SegOutput(logits=logits), target).total
    assert loss.item() == 0.0
    assert not torch.isnan(loss)
    assert loss.requires_grad
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_ce_bad_label_raises_naming_value():
    logits = torch.randn(1, 3, 2, 2)
    target = torch.tensor([[[0, 1], [7, 255]]])
    with pytest.raises(ValueError, match=r"\[7\]"):
        build_loss("ce")(SegOutput(logits=logits), target)
    with pytest.raises(ValueError, match=r"\[-1\]"):
        pixel_cross_entropy(logits, torch.tensor([[[0, 1], [-1, 255]]]))


def test_ce_bf16_logits_computed_in_float32():
    logits = torch.randn(1, 4, 3, 3)
    target = torch.randint(0, 4, (1, 6, 6))
    a = pixel_cross_entropy(logits.bfloat16(), target)
    b = pixel_cross_entropy(logits.bfloat16().float(), target)
    assert a.dtype == torch.float32
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
