"""Loading local ImageNet-style checkpoints (state dicts the test writes in the official key layout)."""
import pytest
import torch

from seglab.errors import ConfigError
from seglab.models import build_model
from seglab.models.pretrained import load_pretrained
from seglab.platform.build import build_model as build_from_config
from seglab.platform.config import ModelConfig


def _official_hrnet_imagenet_file(tmp_path, arch="hrnet_w18_small_v1"):
    """The official HRNet ImageNet checkpoints hold the body under its own names plus the
    classification head (incre_modules, downsamp_modules, final_layer, classifier)."""
    torch.manual_seed(1)
    body = {k: torch.randn_like(v) if v.is_floating_point() else v
            for k, v in build_model(arch, num_classes=5).state_dict().items() if not k.startswith("head.")}
    extra = {"incre_modules.0.0.conv1.weight": torch.randn(32, 16, 1, 1), "classifier.weight": torch.randn(1000, 2048),
             "classifier.bias": torch.randn(1000)}
    path = tmp_path / "hrnet_imagenet.pth"
    torch.save({**body, **extra}, path)
    return path, body, extra


def test_hrnet_imagenet_keys_load_and_report(tmp_path):
    path, body, extra = _official_hrnet_imagenet_file(tmp_path)
    model = build_model("hrnet_w18_small_v1", num_classes=19)
    loaded, missing, unexpected = load_pretrained(model, str(path))
    assert loaded == len(body)
    assert set(missing) == {k for k in model.state_dict() if k.startswith("head.")}
    assert set(unexpected) == set(extra)
    for k, v in body.items():
        assert torch.equal(model.state_dict()[k], v)


def test_ovenet_offset_branch_starts_from_the_loaded_stage4(tmp_path, capsys):
    path, body, _ = _official_hrnet_imagenet_file(tmp_path)
    model = build_from_config(ModelConfig("ovenet_hrnet_w18_small_v1", {}, str(path)), num_classes=19)
    state = model.state_dict()
    w = "stage4.0.branches.0.0.conv1.weight"
    assert torch.equal(state[w], body[w]) and torch.equal(state["offset_stage.0.branches.0.0.conv1.weight"], body[w])
    assert torch.equal(state["offset_transition.3.0.0.weight"], body["transition3.3.0.0.weight"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"model.pretrained: loaded {len(body)} tensors from {path}")
    assert "3 unexpected" in line


def test_different_width_is_refused(tmp_path):
    path, _, _ = _official_hrnet_imagenet_file(tmp_path, arch="hrnet_w18_small_v2")
    with pytest.raises(ConfigError, match="is for a different architecture than HRNetV2: .* differ in shape"):
        load_pretrained(build_model("hrnet_w18_small_v1", num_classes=19), str(path))


def test_classifier_of_another_class_count_is_skipped(tmp_path):
    trained = build_model("hrnet_w18_small_v1", num_classes=7)
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "c.pt")
    model = build_model("hrnet_w18_small_v1", num_classes=19)
    loaded, missing, unexpected = load_pretrained(model, str(tmp_path / "c.pt"))
    assert missing == ["head.classifier.bias", "head.classifier.weight"] and unexpected == []
    assert loaded == len(model.state_dict()) - 2


@pytest.mark.parametrize("content,fragment", [
    (None, "file not found"),
    (b"not a torch file", "cannot read"),
    ({"w": [1, 2]}, "does not hold a state dict of tensors"),
    ({"nothing.matches": torch.zeros(3)}, "no tensor of"),
])
def test_bad_files_are_one_line_errors(tmp_path, content, fragment):
    path = tmp_path / "w.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(ConfigError, match=fragment) as info:
        load_pretrained(build_model("hrnet_w18_small_v1", num_classes=3), str(path))
    assert "\n" not in str(info.value) and "model.pretrained" in str(info.value)
