"""Multi-scale / flip / sliding-window inference (seglab.metrics.inference)."""
import pytest
import torch
from torch import nn

from seglab.metrics import InferenceConfig, predict_probs, slide_logits
from seglab.models.outputs import SegOutput


class FlipEquivariant(nn.Module):
    """Convolutions whose kernels are mirror-symmetric left-right, then a stride-2 average pool:
    model(flip(x)) == flip(model(x)) by construction (widths even)."""

    def __init__(self, classes=4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.k1 = nn.Parameter(torch.randn(8, 3, 3, 3, generator=g))
        self.k2 = nn.Parameter(torch.randn(classes, 8, 3, 3, generator=g))

    def forward(self, x):
        sym = lambda k: (k + k.flip(-1)) / 2  # noqa: E731
        h = torch.relu(nn.functional.conv2d(x, sym(self.k1), padding=1))
        logits = nn.functional.avg_pool2d(nn.functional.conv2d(h, sym(self.k2), padding=1), 2)
        return SegOutput(logits=logits, output_stride=2)


def test_flip_of_a_flip_equivariant_model_changes_nothing():
    model = FlipEquivariant().eval()
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    flip = predict_probs(model, x, InferenceConfig(scales=(1.0,), flip=True))
    single = predict_probs(model, x, InferenceConfig(scales=(1.0,)))
    assert torch.allclose(flip, single, atol=1e-6)
    # and the single-scale prediction is the plain forward's (logits resized to the input, softmax)
    plain = nn.functional.interpolate(model(x).logits, size=(16, 24), mode="bilinear", align_corners=False)
    assert torch.allclose(single, plain.softmax(1), atol=1e-6)
    assert torch.equal(single.argmax(1), plain.argmax(1))
    # a model that is not flip-equivariant does change (the test can fail)
    kernel = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(3))
    lopsided = lambda t: SegOutput(logits=nn.functional.conv2d(t, kernel, padding=1))  # noqa: E731
    assert not torch.allclose(predict_probs(lopsided, x, InferenceConfig(flip=True)),
                              predict_probs(lopsided, x, InferenceConfig()), atol=1e-3)


class SizeLogit(nn.Module):
    """Constant logits (log H_in, 0): P(class 0) = H_in / (H_in + 1) at every pixel."""

    def forward(self, x):
        b, _, h, w = x.shape
        logits = torch.zeros(b, 2, h, w)
        logits[:, 0] = torch.log(torch.tensor(float(h)))
        return SegOutput(logits=logits)


def test_multi_scale_averages_the_softmax_of_every_scale_by_hand():
    x = torch.zeros(1, 3, 8, 6)
    probs = predict_probs(SizeLogit(), x, InferenceConfig(scales=(0.5, 1.0, 1.5), flip=True))
    # heights int(8 s + 0.5): 4, 8, 12 -> P0 = 4/5, 8/9, 12/13 (each twice with the flip)
    expected = (4 / 5 + 8 / 9 + 12 / 13) / 3
    assert probs.shape == (1, 2, 8, 6)
    assert torch.allclose(probs[:, 0], torch.full((1, 8, 6), expected), atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(1, 8, 6), atol=1e-6)


class WindowMean(nn.Module):
    """One class: the mean of the window's first channel, everywhere in the window (stride 2 output)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x):
        self.calls.append(tuple(x.shape[-2:]))
        b, _, h, w = x.shape
        return SegOutput(logits=x[:, :1].mean(dim=(2, 3), keepdim=True).expand(b, 1, h // 2, w // 2), output_stride=2)


def test_slide_over_one_window_is_the_plain_forward():
    model = FlipEquivariant().eval()
    x = torch.randn(1, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    plain = nn.functional.interpolate(model(x).logits, size=(16, 24), mode="bilinear", align_corners=False)
    assert torch.allclose(slide_logits(model, x, (16, 24), (8, 8)), plain, atol=1e-6)
    # a window larger than the input: one window of the input's own size
    assert torch.allclose(slide_logits(model, x, (32, 32)), plain, atol=1e-6)


def test_slide_overlap_by_hand():
    # 4x6 input whose first channel is the column index; windows 4x4 every 2 px: columns 0-3 and 2-5
    x = torch.arange(6.0).expand(1, 3, 4, 6).clone()
    model = WindowMean()
    out = slide_logits(model, x, (4, 4), (2, 2))
    assert model.calls == [(4, 4), (4, 4)]
    # window means 1.5 and 3.5; columns 2-3 are covered twice: (1.5 + 3.5) / 2
    assert torch.equal(out[0, 0, 0], torch.tensor([1.5, 1.5, 2.5, 2.5, 3.5, 3.5]))
    # the last window is shifted back to end at the border: width 7 with stride 2 -> x1 = 0, 2, 3
    model.calls.clear()
    x7 = torch.arange(7.0).expand(1, 3, 4, 7).clone()
    out7 = slide_logits(model, x7, (4, 4), (2, 2))
    assert model.calls == [(4, 4)] * 3
    a, b, c = 1.5, 3.5, 4.5  # means of columns 0-3, 2-5, 3-6
    expected = torch.tensor([a, a, (a + b) / 2, (a + b + c) / 3, (b + c) / 2, (b + c) / 2, c])
    assert torch.allclose(out7[0, 0, 0], expected)


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="scales"):
        InferenceConfig(scales=(0.0,))
    with pytest.raises(ValueError, match="stride"):
        InferenceConfig(crop=(4, 4), stride=(5, 1))
    assert InferenceConfig(crop=(512, 1024)).stride == (341, 682)
