"""build_model / list_models: names, keyword validation, one-line ConfigErrors, import hygiene."""
import subprocess
import sys

import pytest
import torch

from seglab.errors import ConfigError
from tests.models.conftest import build_meta
from seglab.models import MODELS, SegOutput, build_model, list_models, model_options, register_model
from seglab.models.outputs import SegOutput as OutputsSegOutput
from seglab.registry import UnknownNameError





def test_reexports():
    assert SegOutput is OutputsSegOutput
    assert register_model == MODELS.register
    assert list_models() == MODELS.list()


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        build_model("hrnet_w64", num_classes=19)
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert "hrnet_w64" in message and "\n" not in message
    for name in list_models():
        assert name in message


def test_builds_with_plain_kwargs():
    model = build_meta("ovenet_hrnet_w18_small_v1", num_classes=19, tau=0.25, offset_modules=2)
    assert model.tau == 0.25 and model.offset_modules == 2 and model.num_classes == 19
    assert len(model.offset_stage) == 2
    model = build_meta("hrnet_w18_small_v1", num_classes=7, in_chans=1, align_corners=False, bn_momentum=0.01)
    assert model.conv1.in_channels == 1
    assert model.head.classifier.out_channels == 7
    assert model.bn1.momentum == 0.01


def test_model_options():
    assert model_options("hrnet_w48") == ["num_classes", "in_chans", "bn_momentum", "align_corners", "weight_init"]
    ovenet = ["num_classes", "tau", "offset_modules", "tau_mode", "branch_stage", "cascade_steps", "resample",
              "freeze_body", "inference_output"]
    common = ["in_chans", "bn_momentum", "align_corners", "weight_init"]
    assert model_options("ovenet_hrnet_w48") == ovenet + common
    assert model_options("ovenet_hrnet_w48_ocr") == ovenet + ["ocr_mid_channels", "ocr_key_channels",
                                                              "ocr_dropout"] + common


@pytest.mark.parametrize(
    "name,kwargs,fragment",
    [
        ("ovenet_hrnet_w18_small_v1", {"tau": -1.0}, "model.tau must be > 0 (got -1.0)"),
        ("hrnet_w18_small_v1", {"weight_init": "xavier"}, "model.weight_init must be one of kaiming, hrnet"),
        ("ovenet_hrnet_w18_small_v1", {"tau": 0}, "model.tau must be > 0 (got 0)"),
        ("ovenet_hrnet_w18_small_v1", {"tau": "0.5"}, "model.tau must be > 0 (got '0.5')"),
        ("ovenet_hrnet_w18_small_v1", {"offset_modules": 0}, "model.offset_modules must be an integer >= 1"),
        ("hrnet_w18_small_v1", {"num_classes": 0}, "model.num_classes must be an integer >= 1 (got 0)"),
        ("ovenet_hrnet_w18_small_v1", {"num_classes": -3}, "model.num_classes must be an integer >= 1 (got -3)"),
        ("hrnet_w18_small_v1", {"num_classes": 2.5}, "model.num_classes must be an integer >= 1 (got 2.5)"),
        ("hrnet_w18_small_v1", {"num_classes": True}, "model.num_classes must be an integer >= 1 (got True)"),
        ("hrnet_w18_small_v1", {"num_classes": 19, "in_chans": 0}, "model.in_chans must be an integer >= 1"),
        ("hrnet_w18_small_v1", {"num_classes": 19, "bn_momentum": 1.5}, "model.bn_momentum must be a number in (0, 1]"),
        ("hrnet_w18_small_v1", {"num_classes": 19, "align_corners": "yes"},
         "model.align_corners must be true or false"),
        ("hrnet_w18_small_v1", {"num_classes": 19, "tau": 0.5},
         "model.tau is not an option of model 'hrnet_w18_small_v1'; valid options: num_classes, in_chans, "
         "bn_momentum, align_corners"),
        ("ovenet_hrnet_w48", {"num_classes": 19, "taus": 0.5}, "model.taus is not an option of model"),
    ],
)
def test_bad_values_raise_one_line_config_error(name, kwargs, fragment):
    kwargs = {"num_classes": 19, **kwargs}
    with pytest.raises(ConfigError) as info:
        build_meta(name, **kwargs)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_core_does_not_import_platform_libraries():
    code = (
        "import sys, seglab.models, seglab.models.complexity\n"
        "bad = [m for m in ('ray', 'mlflow', 'hydra', 'omegaconf') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_weight_init_schemes_hand_checked_statistics():
    torch.manual_seed(0)
    official = build_model("hrnet_w18_small_v1", num_classes=3, weight_init="hrnet")
    kaiming = build_model("hrnet_w18_small_v1", num_classes=3)
    w_off, w_kai = official.conv2.weight, kaiming.conv2.weight  # 64 -> 64, 3x3
    assert abs(w_off.std().item() - 0.001) < 1e-4
    # He normal, fan_out = 64 * 3 * 3: std = sqrt(2 / 576)
    assert abs(w_kai.std().item() - (2 / 576) ** 0.5) < 0.004
    assert torch.all(kaiming.bn1.weight == 1) and torch.all(kaiming.bn1.bias == 0)
