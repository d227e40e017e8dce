"""Bad input to SEMEDA and PHGMM sweeps: one line naming the key, raised while validating the plan
(before any Ray resource), exactly as the entry scripts do it."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seglab.datasets.fixtures.cityscapes import write_cityscapes
from seglab.errors import ConfigError
from seglab.losses.semeda import SemedaEdgeNet, save_edge_net
from seglab.platform.sweep.plan import SweepConfig, plan_trials
from seglab.platform.sweep import validate_sweep

CONF = str(Path(__file__).resolve().parents[3] / "experiments" / "conf")
TINY = ["trainer=tiny", "dataset.image_size=[32,64]", "dataset.train.num_samples=2", "dataset.train.crop_size=[32,64]",
        "dataset.val.num_samples=2", "dataset.test.num_samples=2"]


def _validate(config_name, overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = OmegaConf.to_container(compose(config_name=config_name, overrides=overrides), resolve=True)
    sweep = SweepConfig.from_dict(cfg.pop("sweep"))
    return validate_sweep(cfg, sweep, plan_trials(cfg, sweep))


def _error(config_name, overrides):
    with pytest.raises(ConfigError) as info:
        _validate(config_name, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def five_class_edge_net(tmp_path):
    path = tmp_path / "edge5.pt"
    save_edge_net(path, SemedaEdgeNet(5), {"class_names": [f"c{i}" for i in range(5)], "dataset": "other"})
    return str(path)


def test_semeda_bad_input_names_the_key(tmp_path, five_class_edge_net):
    assert "loss.lambda1" in _error("semeda", TINY + ["model=unet", "loss.lambda1=-1"])
    assert "loss.lambda3" in _error("semeda", TINY + ["model=unet", "loss.lambda3=abc"])
    message = _error("semeda", TINY + ["model=unet", f"loss.edge_net={five_class_edge_net}"])
    assert five_class_edge_net in message and "5 classes" in message and "9" in message
    assert "loss.edge_net" in _error("semeda", TINY + ["model=unet", f"loss.edge_net={tmp_path / 'missing.pt'}"])
    assert "trainer.trimap_widths" in _error("semeda", TINY + ["model=unet", "trainer.trimap_widths=[0,2]"])
    assert "trainer.trimap_widths" in _error("semeda", TINY + ["model=unet", "trainer.trimap_widths=[1.5]"])
    assert "sweep.lambda2 values must be >= 0" in _error("semeda", TINY + ["model=unet", "sweep.lambda2=[1,-2]"])
    assert "loss.edge_net.steps" in _error("semeda", TINY + ["model=unet", "+loss.edge_net={steps:0}"])


def test_semeda_on_a_split_without_labels_is_refused(tmp_path):
    write_cityscapes(tmp_path, {"train": 1, "val": 1, "test": 1})
    message = _error("semeda", ["trainer=tiny", "model=unet", "dataset=cityscapes", f"dataset.root={tmp_path}", "dataset.selection_fraction=null",
                                "+dataset.train.split=test"])
    assert message.startswith("dataset.train.split=test of dataset 'cityscapes' has no labels")


def test_a_valid_semeda_plan_has_the_ppce_baseline_on_the_same_model():
    summaries = _validate("semeda", TINY + ["model=unet", "model.base_width=8"])
    assert len(summaries) == 2 and summaries[0].params == summaries[1].params  # PPCE and SEMEDA: one network


@pytest.mark.parametrize("override,fragment", [
    ("model.num_components=0", "model.num_components"),
    ("model.num_components=2.5", "model.num_components"),
    ("loss.lambda_z=-1", "loss.lambda_z"),
    ("loss.kl_z=exact", "loss.kl_z"),
    ("model=hrnet_w18_small_v1", "loss=phgmm needs a model with latents"),
    ("sweep.k=[4,0]", "sweep.k values must be >= 1"),
    ("sweep.k=[2.5]", "sweep.k values must be integers"),
    ("dataset.background=none", "dataset.background"),
])
def test_phgmm_bad_input_names_the_key(override, fragment):
    assert fragment in _error("phgmm", TINY + [override])


def test_a_phgmm_model_needs_its_loss():
    assert "set loss=phgmm" in _error("phgmm", TINY + ["loss=ce"])


def test_a_phgmm_checkpoint_for_another_class_set_is_refused(tmp_path):
    import torch

    path = tmp_path / "phgmm5.pt"  # a PHGMM whose PostNet saw image (3) + one-hot of 5 classes
    torch.save({"postnet.backbone.conv1.weight": torch.zeros(64, 3 + 5, 7, 7)}, path)
    message = _error("phgmm", TINY + [f"model.pretrained={path}"])
    assert "PostNet saw 5 classes" in message and "has 12" in message
