"""FrozenBatchNorm2d / freeze_batchnorm: BN's eval-mode output in every mode, no statistics update,
state-dict compatibility with nn.BatchNorm2d, whole-model freezing, meta device and deepcopy."""
import copy

import pytest
import torch
from torch import nn

from seglab.models import build_model
from seglab.models.frozen_bn import FrozenBatchNorm2d, freeze_batchnorm

from .conftest import build_meta


def random_bn(channels=6, seed=0, **kwargs):
    """A BatchNorm2d with non-trivial statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, **kwargs)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels, generator=gen))
        bn.running_var.copy_(torch.rand(channels, generator=gen) * 2 + 0.1)
        if bn.affine:
            bn.weight.copy_(torch.randn(channels, generator=gen))
            bn.bias.copy_(torch.randn(channels, generator=gen))
    bn.num_batches_tracked.fill_(17)
    return bn


def test_equals_batchnorm_eval_output_and_formula():
    bn = random_bn(eps=1e-3).eval()
    frozen = FrozenBatchNorm2d.from_batchnorm(bn)
    x = torch.randn(3, 6, 5, 7) * 3 + 1
    torch.testing.assert_close(frozen(x), bn(x), rtol=1e-5, atol=1e-5)
    # by hand, in float64: (x - mean) / sqrt(var + eps) * weight + bias
    d = lambda t: t.detach().double().view(1, -1, 1, 1)  # noqa: E731
    by_hand = (x.double() - d(bn.running_mean)) / torch.sqrt(d(bn.running_var) + 1e-3) * d(bn.weight) + d(bn.bias)
    torch.testing.assert_close(frozen(x).double(), by_hand, rtol=1e-5, atol=1e-5)
    assert frozen.eps == 1e-3


def test_train_mode_changes_nothing():
    bn = random_bn()
    frozen = FrozenBatchNorm2d.from_batchnorm(bn)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    x = torch.randn(2, 6, 4, 4) * 5 + 3  # far from the running statistics
    frozen.eval()
    eval_out = frozen(x)
    frozen.train()
    assert torch.equal(frozen(x), eval_out)
    for key, value in frozen.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert list(frozen.parameters()) == []  # nothing an optimiser could update
    # whereas a BatchNorm2d in train mode would have normalised with the batch statistics
    assert not torch.allclose(bn.train()(x), eval_out, atol=1e-3)


def test_state_dict_round_trips_with_batchnorm():
    bn = random_bn()
    frozen = FrozenBatchNorm2d(6)
    assert set(frozen.state_dict()) == set(bn.state_dict()) - {"num_batches_tracked"}
    frozen.load_state_dict(bn.state_dict())  # strict, with num_batches_tracked: accepted and dropped
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(frozen(x), bn.eval()(x))
    fresh = nn.BatchNorm2d(6)
    fresh.load_state_dict(frozen.state_dict())  # strict the other way: BN starts its counter at 0
    assert int(fresh.num_batches_tracked) == 0
    torch.testing.assert_close(fresh.eval()(x), bn(x))
    # inside a model: a BN model's checkpoint loads into the frozen model, and back
    bn_model = nn.Sequential(nn.Conv2d(3, 6, 1), random_bn(seed=1))
    frozen_model = freeze_batchnorm(copy.deepcopy(bn_model))
    frozen_model[1].running_mean.zero_()
    frozen_model.load_state_dict(bn_model.state_dict())
    assert torch.equal(frozen_model[1].running_mean, bn_model[1].running_mean)
    other = nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6))
    other.load_state_dict(frozen_model.state_dict())
    assert torch.equal(other[1].running_var, bn_model[1].running_var)


def test_non_affine_sync_root_and_shared_batchnorms():
    plain = random_bn(affine=False).eval()
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(FrozenBatchNorm2d.from_batchnorm(plain)(x), plain(x))
    root = freeze_batchnorm(random_bn())
    assert type(root) is FrozenBatchNorm2d
    sync = nn.SyncBatchNorm(6)
    shared = random_bn(seed=3)
    model = nn.Sequential(nn.Sequential(sync), shared, shared)
    assert freeze_batchnorm(model) is model
    assert type(model[0][0]) is FrozenBatchNorm2d and type(model[1]) is FrozenBatchNorm2d
    assert model[1] is model[2]  # one BN used twice -> one frozen module used twice
    with pytest.raises(ValueError, match="track_running_stats=False"):
        freeze_batchnorm(nn.BatchNorm2d(4, track_running_stats=False))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        root(torch.randn(2, 6))


def test_freeze_deeplabv3plus_keeps_its_eval_output_and_survives_train():
    torch.manual_seed(0)
    # float64, so that the comparison is about the maths and not about float32 rounding through 100 layers
    model = build_model("deeplabv3plus_r50", num_classes=3).double()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) > 50
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # statistics a trained model might have, so the check is not 0 = 0
        for bn in bns:
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        reference = model.eval()(images).logits
    n_params = sum(p.numel() for p in model.parameters())
    bn_params = sum(2 * bn.num_features for bn in bns)

    frozen = freeze_batchnorm(model)
    assert frozen is model
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm)) for m in model.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules()) == len(bns)
    assert sum(p.numel() for p in model.parameters()) == n_params - bn_params  # nothing left to train in BN
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, reference, rtol=1e-9, atol=1e-9)
        stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
        model.train()
        model(images * 3 + 1)  # a train-mode forward on very different data
        for key, value in model.state_dict().items():
            if "running" in key:
                assert torch.equal(value, stats[key]), key
        torch.testing.assert_close(model.eval()(images).logits, reference, rtol=1e-9, atol=1e-9)


def test_meta_device_and_deepcopy():
    model = build_meta("deeplabv3plus_r50", num_classes=3)
    freeze_batchnorm(model)
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and all(t.device.type == "meta" for m in frozen for t in m.buffers())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.device("meta"):
        made_on_meta = FrozenBatchNorm2d(4)
    assert made_on_meta.running_var.device.type == "meta"

    small = freeze_batchnorm(nn.Sequential(nn.Conv2d(3, 6, 3), random_bn()))
    twin = copy.deepcopy(small)
    x = torch.randn(1, 3, 6, 6)
    assert torch.equal(twin(x), small(x))
    twin[1].running_mean.add_(1.0)  # the copy owns its buffers
    assert not torch.equal(twin[1].running_mean, small[1].running_mean)
