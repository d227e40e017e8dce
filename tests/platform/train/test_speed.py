"""The training loop's speed switches on CPU (seglab/platform/train/speed.py): autocast in bf16 and fp16
(with its GradScaler) trains with finite, decreasing loss; torch.compile and channels_last give the
eager, NCHW outputs; checkpoints of a compiled model have the plain state-dict keys."""
import pytest
import torch
from torch import nn

from seglab.losses import build_loss
from seglab.models import build_model
from seglab.platform import checkpoint as ckpt
from seglab.platform.train import speed
from seglab.platform.config import TrainerConfig
from seglab.errors import ConfigError

CPU = torch.device("cpu")


def _batch():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 32, 32, generator=g)  # fp16 convolutions are slow on CPU: small
    labels = (images[:, 0] > 0).long() + (images[:, 1] > 0).long()  # 3 classes a network can learn
    return images, labels


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_with_finite_decreasing_loss(precision):
    torch.manual_seed(0)
    # align_corners=True: with HRNetV2's official False, CPU fp16 autocast of this tiny run is noisy and
    # reaches NaN after ~25 steps at lr 0.01 (bf16 is not); the precision machinery is what is tested here
    model = speed.prepare_model(build_model("hrnet_w18_small_v1", num_classes=3, align_corners=True), CPU)
    criterion = build_loss("ce", ignore_index=255)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    forward, scaler = speed.autocast(precision, CPU), speed.grad_scaler(precision, CPU)
    assert (scaler is not None) == (precision == "fp16")
    images, labels = _batch()
    losses = []
    for _ in range(20):
        with forward():
            out = model(images, labels)
            result = criterion(out, labels)
        assert out.logits.dtype == (torch.bfloat16 if precision == "bf16" else torch.float16)
        optimizer.zero_grad(set_to_none=True)
        speed.backward_step(result.total, optimizer, scaler)
        losses.append(float(result.total.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    # fp16: the GradScaler skips the first steps (its initial scale overflows) and lowers the scale
    assert sum(losses[-3:]) / 3 < 0.8 * max(losses[:3]), losses
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    if scaler is not None:
        assert scaler.get_scale() < 2.0 ** 16  # it lowered its initial scale after overflows


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 4, 3, padding=1))

    def forward(self, x):
        return self.body(x)


def test_compile_gives_the_eager_outputs_and_a_plain_checkpoint():
    torch.manual_seed(0)
    eager = _Net().eval()
    compiled = speed.compile_model(eager, True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(compiled(x), eager(x), atol=1e-5)
    assert list(ckpt.unwrap(compiled).state_dict()) == list(eager.state_dict())  # no "_orig_mod." prefix
    assert speed.compile_model(eager, False) is eager


def test_channels_last_gives_the_nchw_outputs():
    torch.manual_seed(0)
    model = _Net().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        nhwc = speed.prepare_model(model, CPU, channels_last=True)
        assert nhwc.body[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(nhwc(speed.to_input(x, True)), expected, atol=1e-5)


def test_sync_bn_is_ignored_on_cpu_with_one_line():
    said = []
    model = speed.prepare_model(_Net(), CPU, sync_bn=True, distributed=True, say=said.append)
    assert isinstance(model.body[1], nn.BatchNorm2d) and not isinstance(model.body[1], nn.SyncBatchNorm)
    assert len(said) == 1 and "sync_bn" in said[0]


def test_trainer_keys_are_checked():
    assert TrainerConfig.from_dict({"precision": "bf16", "compile": True}).precision == "bf16"
    with pytest.raises(ConfigError, match="trainer.precision must be one of fp32, bf16, fp16"):
        TrainerConfig.from_dict({"precision": "int8"})
    with pytest.raises(ConfigError, match="trainer.channels_last must be true or false"):
        TrainerConfig.from_dict({"channels_last": "yes"})
