"""The loss registry and the import-purity of the core packages."""
import subprocess
import sys

import pytest
from torch import nn

from seglab.errors import ConfigError
from seglab.losses import LOSSES, build_loss, list_losses
from seglab.registry import UnknownNameError


def test_registered_losses():
    assert {"ce", "ovenet"} <= set(list_losses())
    assert list_losses() == LOSSES.list()
    assert isinstance(build_loss("ce"), nn.Module)
    assert isinstance(build_loss("ovenet", kappa=0.25), nn.Module)


def test_unknown_loss_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        build_loss("focal")
    assert "ce" in str(info.value) and "ovenet" in str(info.value)


def test_unknown_option_names_key():
    with pytest.raises(ConfigError, match=r"loss 'ce' has no option loss\.kapa; valid options: loss\.ignore_index"):
        build_loss("ce", kapa=1)
    with pytest.raises(ConfigError, match=r"loss\.ignore_index must be an integer"):
        build_loss("ce", ignore_index="255")


def test_core_does_not_import_platform_dependencies():
    code = (
        "import sys, seglab.losses, seglab.metrics\n"
        "bad = [m for m in ('ray', 'mlflow', 'hydra', 'omegaconf') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
