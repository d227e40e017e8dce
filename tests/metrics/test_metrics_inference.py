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


# ----------------------------------------------------------------------------------- flip permutation
class FaceSides(nn.Module):
    """A HELEN face parser that knows left from right. A mirror-symmetric convolution of the image
    gives every class a content score, the same for a left part and its right twin (2/3, 4/5); on
    top, a term in the pixel's column adds up to +6 to the *left* classes on the image's left half
    and to the *right* classes on its right half (brows 2/3 in the top 11/32 of the rows, the fixture's
    brows' band, eyes 4/5 below).
    So model(mirror(x)) is mirror(model(x)) with channels 2<->3 and 4<->5 exchanged, exactly."""

    def __init__(self):
        super().__init__()
        kernel = torch.randn(11, 3, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.05
        kernel = (kernel + kernel.flip(-1)) / 2
        kernel[3], kernel[5] = kernel[2], kernel[4]
        self.register_buffer("kernel", kernel)

    def forward(self, x):
        h, w = x.shape[-2:]
        logits = nn.functional.conv2d(x, self.kernel, padding=1)
        side = (w - 1 - 2 * torch.arange(w, dtype=x.dtype)) / (w - 1)  # +1 at the left edge, -1 at the right
        left, right = 6 * side.clamp(min=0), 6 * (-side).clamp(min=0)
        upper = ((torch.arange(h) + 0.5) * 32 / h < 11).to(x.dtype)[:, None]
        logits[:, 2] += left * upper
        logits[:, 3] += right * upper
        logits[:, 4] += left * (1 - upper)
        logits[:, 5] += right * (1 - upper)
        return SegOutput(logits=logits)


@pytest.fixture(scope="module")
def helen_image(tmp_path_factory):
    """The first val image of the HELEN fixture, as the data set gives it: (1, 3, 32, 48) normalised."""
    from seglab.datasets import build_dataset
    from seglab.datasets.fixtures.helen import write_helen

    root = tmp_path_factory.mktemp("helen")
    write_helen(root, splits={"val": 1})
    return build_dataset("helen", split="val", root=str(root))[0][0][None]


def test_flip_with_the_data_sets_permutation_keeps_left_and_right(helen_image):
    from seglab.datasets.helen import HELEN

    model = FaceSides().eval()
    for scales in ((1.0,), (0.75, 1.0, 1.5)):
        plain = predict_probs(model, helen_image, InferenceConfig(scales=scales))
        labels = plain.argmax(1)[0]  # the premise: the model tells the sides apart (corners by hand)
        assert [int(labels[0, 0]), int(labels[0, 47]), int(labels[31, 0]), int(labels[31, 47])] == [2, 3, 4, 5]
        flip = predict_probs(model, helen_image,
                             InferenceConfig(scales=scales, flip=True, flip_permutation=HELEN.flip_permutation))
        assert torch.allclose(flip, plain, atol=1e-6)
        # without the exchange the mirrored view votes for the other side: left and right tie everywhere
        unswapped = predict_probs(model, helen_image, InferenceConfig(scales=scales, flip=True))
        assert torch.allclose(unswapped[:, 2], unswapped[:, 3], atol=1e-6)
        assert not torch.allclose(unswapped, plain, atol=1e-2)


class ConstantLogits(nn.Module):
    """Logits 0, 1, 2, 3 for classes 0..3 at every pixel (the same for an image and its mirror)."""

    def forward(self, x):
        b, _, h, w = x.shape
        return SegOutput(logits=torch.arange(4.0).view(1, 4, 1, 1).expand(b, 4, h, w))


def test_flip_permutation_exchanges_the_mirrored_views_channels_by_hand():
    x = torch.zeros(1, 3, 4, 6)
    s = torch.softmax(torch.arange(4.0), 0)
    probs = predict_probs(ConstantLogits(), x, InferenceConfig(flip=True, flip_permutation=(1, 0, 2, 3)))
    # the mirrored view's classes 0 and 1 exchanged, then averaged with the plain view
    expected = torch.stack([(s[0] + s[1]) / 2, (s[0] + s[1]) / 2, s[2], s[3]])
    assert torch.allclose(probs[0, :, 2, 3], expected, atol=1e-7)
    assert torch.allclose(predict_probs(ConstantLogits(), x, InferenceConfig(flip=True))[0, :, 2, 3], s, atol=1e-7)


def test_identity_permutation_changes_nothing():
    """A data set without left/right classes (permutation None or identity) gives the plain flip."""
    kernel = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(3))
    lopsided = lambda t: SegOutput(logits=nn.functional.conv2d(t, kernel, padding=1))  # noqa: E731
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    plain_flip = predict_probs(lopsided, x, InferenceConfig(flip=True))
    identity = predict_probs(lopsided, x, InferenceConfig(flip=True, flip_permutation=(0, 1, 2, 3)))
    assert torch.equal(identity, plain_flip)
    # and the flip itself does change a lopsided model's answer (so the comparison can fail)
    assert not torch.allclose(plain_flip, predict_probs(lopsided, x, InferenceConfig()), atol=1e-3)
    # and a real exchange of two classes changes it
    swapped = predict_probs(lopsided, x, InferenceConfig(flip=True, flip_permutation=(1, 0, 2, 3)))
    assert not torch.allclose(swapped, plain_flip, atol=1e-3)


def test_bad_flip_permutations_raise():
    for bad in ((0, 0, 1), (1, 2, 0), (0, 2), (0, -1), ("a", 1)):
        with pytest.raises(ValueError, match="flip_permutation"):
            InferenceConfig(flip=True, flip_permutation=bad)
    with pytest.raises(ValueError, match="flip_permutation has 3 classes but the model predicts 4"):
        predict_probs(ConstantLogits(), torch.zeros(1, 3, 4, 4), InferenceConfig(flip=True, flip_permutation=(0, 2, 1)))
