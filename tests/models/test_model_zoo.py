"""Every registered model builds, runs forward + backward on a tiny input, with the documented shapes."""
import pytest
import torch

from seglab.models import SegOutput, build_model, list_models

EXPECTED_MODELS = [
    f"{method}hrnet_{width}"
    for method in ("", "ovenet_")
    for width in ("w18_small_v1", "w18_small_v2", "w18", "w32", "w48")
]




def test_registered_names():
    assert sorted(EXPECTED_MODELS) == list_models()


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_tiny_input(name):
    torch.manual_seed(0)
    num_classes = 5
    model = build_model(name, num_classes=num_classes)
    assert model.output_stride == 4
    images = torch.randn(2, 3, 64, 64)
    out = model(images)
    assert isinstance(out, SegOutput)
    assert out.output_stride == 4
    assert out.logits.shape == (2, num_classes, 16, 16)
    maps = {"logits": out.logits, **out.extras()}
    if name.startswith("ovenet_"):
        assert set(maps) == {"logits", "initial_logits", "seed_logits", "offsets", "confidence"}
        for key in ("initial_logits", "seed_logits"):
            assert maps[key].shape == (2, num_classes, 16, 16)
        assert out.offsets.shape == (2, 2, 16, 16)
        assert out.confidence.shape == (2, 1, 16, 16)
        assert out.offsets.abs().max() <= model.tau
        assert ((out.confidence >= 0) & (out.confidence <= 1)).all()
    else:
        assert set(maps) == {"logits"}
    loss = sum(m.float().square().mean() for m in maps.values())
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
    head_grad = model.head.classifier.weight.grad
    assert head_grad.abs().sum() > 0


def test_odd_input_size_rounds_up():
    model = build_model("hrnet_w18_small_v1", num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 50, 70))
    assert out.logits.shape == (1, 3, 13, 18)  # ceil(ceil(50 / 2) / 2), ceil(ceil(70 / 2) / 2)
