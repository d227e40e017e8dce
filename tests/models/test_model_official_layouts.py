"""Official checkpoint layouts: names and shapes pinned by fixtures, files written in them load fully.

``official_layouts/*.txt.gz``: one ``name shape`` line per tensor of the official state dicts
(HRNet-Semantic-Segmentation ``seg_hrnet`` on ``master``, ``seg_hrnet_ocr`` on ``HRNet-OCR``,
stamatisalex/OVeNet ``seg_hrnet_ocr``, HRNet-Image-Classification ``cls_hrnet``, torchvision
``resnet101``), read off the official code with the official configs (header lines say which).
The renames below are written out here by hand, apart from the implementation in
:mod:`seglab.models.layouts`.
"""
import gzip
from pathlib import Path

import pytest
import torch

from seglab.errors import ConfigError
from seglab.models import build_model
from seglab.models.pretrained import load_checkpoint, match_checkpoint
from seglab.platform.build import build_model as build_from_config
from seglab.platform.checkpoint import model_from_state
from seglab.platform.config import ModelConfig
from tests.models.conftest import build_meta

FIXTURES = Path(__file__).parent / "official_layouts"
OCR = "ocr_distri_head.object_context_block."
HRNETV2_HEAD = {"last_layer.0": "head.bottleneck.0", "last_layer.1": "head.bottleneck.1",
                "last_layer.3": "head.classifier"}
OCR_HEAD = {
    "cls_head": "head.classifier", "conv3x3_ocr.0": "head.conv3x3_ocr.0", "conv3x3_ocr.1": "head.conv3x3_ocr.1",
    "aux_head.0": "head.aux_head.bottleneck.0", "aux_head.1": "head.aux_head.bottleneck.1",
    "aux_head.3": "head.aux_head.classifier",
    OCR + "f_pixel.0": "head." + OCR + "f_pixel.0", OCR + "f_pixel.1.0": "head." + OCR + "f_pixel.1",
    OCR + "f_pixel.2": "head." + OCR + "f_pixel.3", OCR + "f_pixel.3.0": "head." + OCR + "f_pixel.4",
    OCR + "f_object.0": "head." + OCR + "f_object.0", OCR + "f_object.1.0": "head." + OCR + "f_object.1",
    OCR + "f_object.2": "head." + OCR + "f_object.3", OCR + "f_object.3.0": "head." + OCR + "f_object.4",
    OCR + "f_down.0": "head." + OCR + "f_down.0", OCR + "f_down.1.0": "head." + OCR + "f_down.1",
    OCR + "f_up.0": "head." + OCR + "f_up.0", OCR + "f_up.1.0": "head." + OCR + "f_up.1",
    "ocr_distri_head.conv_bn_dropout.0": "head.ocr_distri_head.conv_bn_dropout.0",
    "ocr_distri_head.conv_bn_dropout.1.0": "head.ocr_distri_head.conv_bn_dropout.1",
}
OVENET_HEAD = {**OCR_HEAD, "transition3_2": "offset_transition", "stage4_2": "offset_stage",
               "aux_head_offset.0": "offset_head.bottleneck.0", "aux_head_offset.1": "offset_head.bottleneck.1",
               "aux_head_offset.3": "offset_head.classifier"}
TABLES = {"seg_hrnet": HRNETV2_HEAD, "seg_hrnet_ocr": OCR_HEAD, "ovenet_ocr": OVENET_HEAD}


def official(name):
    """[(key, shape)] of fixture ``name``."""
    with gzip.open(FIXTURES / f"{name}.txt.gz", "rt") as f:
        rows = [line.split(" ") for line in f.read().splitlines() if line and not line.startswith("#")]
    return [(key, tuple(int(d) for d in dims.split(",")) if dims else ()) for key, dims in rows]


def seglab_name(key, table):
    """The seglab name of official ``key`` by the hand-written ``table`` (longest module prefix)."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if module in table:
            return ".".join([table[module]] + parts[cut:])
    return key


def meta_state(rows):
    return {key: torch.empty(shape, device="meta") for key, shape in rows}


# ------------------------------------------------------------------------------------- W48 names and shapes
@pytest.mark.parametrize("fixture,model,layout,dropped", [
    ("seg_hrnet_w48", "hrnet_w48", "seg_hrnet", []),
    ("seg_hrnet_ocr_w48", "hrnet_w48_ocr", "seg_hrnet_ocr", []),
    ("ovenet_ocr_w48", "ovenet_hrnet_w48_ocr", "ovenet", ["coords"]),
])
def test_w48_official_trained_layouts_map_onto_every_tensor(fixture, model, layout, dropped):
    rows = official(fixture)
    net = build_meta(model, num_classes=19)
    own = net.state_dict()
    match = match_checkpoint(net, meta_state(rows), fixture)
    assert match.layout.name == layout
    assert match.missing == [] and match.unexpected == [] and match.dropped == dropped
    table = TABLES[fixture.rsplit("_w", 1)[0]]
    expected = {seglab_name(k, table): shape for k, shape in rows if k not in dropped}
    counters = {k for k in own if k.endswith("num_batches_tracked")}
    assert set(expected) | counters == set(own)  # InPlaceABN files (seg_hrnet) have no BN counters
    assert {k: tuple(v.shape) for k, v in match.usable.items()} == expected


def test_ovenet_branch_3_release_maps_its_stage3_and_stage4_copies():
    """OFFSET_BRANCH 3: transition2_2 / stage3_2 -> offset_transition2 / offset_stage3 besides stage 4's."""
    rows = official("ovenet_ocr_w18_small_v1_branch3")
    net = build_meta("ovenet_hrnet_w18_small_v1_ocr", num_classes=19, branch_stage=3)
    match = match_checkpoint(net, meta_state(rows), "branch3")
    assert match.layout.name == "ovenet" and match.missing == [] and match.unexpected == []
    table = {**OVENET_HEAD, "transition2_2": "offset_transition2", "stage3_2": "offset_stage3"}
    assert {k: tuple(v.shape) for k, v in match.usable.items()} == {
        seglab_name(k, table): shape for k, shape in rows if k != "coords"}


@pytest.mark.parametrize("fixture,model,layout,unexpected_prefixes", [
    ("hrnet_imagenet_w48", "hrnet_w48", "hrnet_imagenet",
     ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")),
    ("hrnet_imagenet_w18_small_v1", "hrnet_w18_small_v1", "hrnet_imagenet",
     ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")),
    ("torchvision_resnet101", "deeplabv3plus_r101", "torchvision_resnet", ("fc.",)),
])
def test_imagenet_layouts_load_the_whole_body(fixture, model, layout, unexpected_prefixes):
    rows = official(fixture)
    net = build_meta(model, num_classes=19)
    match = match_checkpoint(net, meta_state(rows), fixture)
    assert match.layout.name == layout
    assert match.missing == sorted(k for k in net.state_dict() if k.startswith("head."))
    assert match.unexpected == sorted(k for k, _ in rows if k.startswith(unexpected_prefixes))
    assert len(match.usable) == len(rows) - len(match.unexpected)


# ------------------------------------------------------------------------------------- files, numbers
def _randomised(name, seed):
    torch.manual_seed(seed)
    model = build_model(name, num_classes=19)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in key else torch.randn_like(tensor) * 0.1)
    return model.eval()


@pytest.mark.parametrize("fixture,model,wrap", [
    ("seg_hrnet_w18_small_v1", "hrnet_w18_small_v1", "final_state"),
    ("seg_hrnet_ocr_w18_small_v1", "hrnet_w18_small_v1_ocr", "checkpoint"),
    ("ovenet_ocr_w18_small_v1", "ovenet_hrnet_w18_small_v1_ocr", "checkpoint"),
])
def test_official_file_loads_fully_and_gives_the_seglab_named_logits(tmp_path, fixture, model, wrap):
    """A file in the official layout, as the official tools/train.py saves it (FullModel: ``model.``
    keys + the criterion's class weights; ``checkpoint.pth.tar`` under ``state_dict``), loads with 0
    missing / 0 unexpected and computes what the same weights under seglab's names compute."""
    reference = _randomised(model, seed=0)
    ref_state = reference.state_dict()
    table = TABLES[fixture.rsplit("_w", 1)[0]]
    state = {}
    for key, shape in official(fixture):
        value = torch.zeros(shape) if key == "coords" else ref_state[seglab_name(key, table)]
        assert tuple(value.shape) == shape, key
        state["model." + key] = value
    state["loss.criterion.weight"] = torch.ones(19)
    torch.save(state if wrap == "final_state" else {"epoch": 3, "state_dict": state}, tmp_path / "official.pth")
    loaded = _randomised(model, seed=1)
    match = load_checkpoint(loaded, str(tmp_path / "official.pth"))
    assert (match.missing, match.unexpected) == ([], [])
    assert sorted(match.dropped) == sorted(["loss.criterion.weight"] + (["coords"] if "ovenet" in fixture else []))
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = loaded(images), reference(images)
    assert torch.equal(got.logits, want.logits)
    if "ocr" in fixture:
        assert torch.equal(got.aux_logits, want.aux_logits)


def test_build_prints_the_recognised_layout_and_body_checkpoint_takes_official_files(tmp_path, capsys):
    reference = _randomised("hrnet_w18_small_v1_ocr", seed=0)
    ref_state = reference.state_dict()
    state = {"model." + k: ref_state[seglab_name(k, OCR_HEAD)] for k, _ in official("seg_hrnet_ocr_w18_small_v1")}
    torch.save(state, tmp_path / "ocr.pth")
    model = build_from_config(ModelConfig("hrnet_w18_small_v1_ocr", {}, str(tmp_path / "ocr.pth")), num_classes=19)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"model.pretrained: loaded {len(ref_state)} tensors from {tmp_path / 'ocr.pth'} "
                           "(layout: HRNet-Semantic-Segmentation HRNet-OCR (seg_hrnet_ocr)); 0 missing")
    assert torch.equal(model.state_dict()["head.classifier.weight"], ref_state["head.classifier.weight"])
    ovenet = build_from_config(ModelConfig("ovenet_hrnet_w18_small_v1_ocr", {}, None,
                                           body_checkpoint=str(tmp_path / "ocr.pth")), num_classes=19)
    assert "(layout: HRNet-Semantic-Segmentation HRNet-OCR (seg_hrnet_ocr))" in capsys.readouterr().out
    for key in ("head.ocr_distri_head.object_context_block.f_pixel.4.weight", "stage4.0.fuse_layers.0.1.0.weight"):
        assert torch.equal(ovenet.state_dict()[key], ref_state[key])


def test_a_seglab_checkpoint_holding_an_official_state_dict_evaluates():
    reference = _randomised("hrnet_w18_small_v1", seed=0)
    ref_state = reference.state_dict()
    weights = {"model." + k: ref_state[seglab_name(k, HRNETV2_HEAD)] for k, _ in official("seg_hrnet_w18_small_v1")}
    model = model_from_state({"model": weights, "num_classes": 19,
                              "run": {"model": {"name": "hrnet_w18_small_v1", "pretrained": None}}})
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(images).logits, reference(images).logits)


def test_a_file_of_no_known_layout_without_the_head_is_refused(tmp_path):
    body = {k: v for k, v in build_model("hrnet_w18_small_v1", num_classes=19).state_dict().items()
            if not k.startswith("head.")}
    torch.save({"module." + k: v for k, v in body.items()}, tmp_path / "body.pth")
    with pytest.raises(ConfigError) as info:
        load_checkpoint(build_model("hrnet_w18_small_v1", num_classes=19), str(tmp_path / "body.pth"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"model.pretrained: {tmp_path / 'body.pth'} matches no known checkpoint layout and "
                              "leaves 9 head tensors of HRNetV2 missing (e.g. head.bottleneck.0.bias")
    assert "; allowed: a seglab state dict of this model, " in message
    for title in ("OVeNet release", "(seg_hrnet_ocr)", "(seg_hrnet)", "ImageNet weights (cls_hrnet)", "torchvision ResNet"):
        assert title in message


def test_the_ovenet_release_as_pretrained_keeps_its_own_offset_branch(tmp_path, capsys):
    """build_model copies the main stage 4 into the offset branch after ImageNet weights, not after a
    file that holds the offset branch (the OVeNet release)."""
    reference = _randomised("ovenet_hrnet_w18_small_v1_ocr", seed=0)
    ref_state = reference.state_dict()
    state = {k: torch.zeros(shape) if k == "coords" else ref_state[seglab_name(k, OVENET_HEAD)]
             for k, shape in official("ovenet_ocr_w18_small_v1")}
    torch.save({"state_dict": {"model." + k: v for k, v in state.items()}}, tmp_path / "ovenet.pth")
    model = build_from_config(ModelConfig("ovenet_hrnet_w18_small_v1_ocr", {}, str(tmp_path / "ovenet.pth")),
                              num_classes=19)
    assert "(layout: OVeNet release (stamatisalex/OVeNet seg_hrnet_ocr)); 0 missing" in capsys.readouterr().out
    key = "offset_stage.0.branches.0.0.conv1.weight"
    assert torch.equal(model.state_dict()[key], state["stage4_2.0.branches.0.0.conv1.weight"])
    assert not torch.equal(model.state_dict()[key], state["stage4.0.branches.0.0.conv1.weight"])
