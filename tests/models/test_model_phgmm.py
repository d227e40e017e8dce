"""PHGMM models (seglab.models.phgmm): shapes, PostNet only in training, parameter / FLOP counts worked
out by hand, gradient routing (Alg. 1), every switch, argument errors; plus the ResNet-18/34 trunks."""
import pytest
import torch
from torch import nn

from seglab.errors import ConfigError
from seglab.losses import PHGMMLoss, gaussian_kl_standard, gmm_kl
from seglab.models import build_model
from seglab.models.backbones.resnet import BasicBlock, ResNetBackbone, resnet18, resnet34, resnet101
from seglab.models.complexity import count_flops, count_inference_parameters, count_parameters
from seglab.models.outputs import SegOutput
from seglab.models.phgmm import PerComponentLinear, one_hot_labels
from tests.models.conftest import build_meta

TINY = dict(num_components=3, latent_dim=16, z_map_channels=8, g_map_channels=8)
LATENTS = {"pi", "mu", "logvar", "g_mu", "g_logvar"}
POSTERIOR = {"post_pi", "post_mu", "post_logvar"}


def tiny_model(**kwargs):
    torch.manual_seed(0)
    return build_model("phgmm_r18", num_classes=4, **{**TINY, **kwargs})


def batch(h=64, w=64, num_classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, h, w, generator=g)
    targets = torch.randint(0, num_classes, (2, h, w), generator=g)
    targets[:, :4, :4] = 255  # some void
    return images, targets


# ------------------------------------------------------------------------------------ ResNet-18/34
def meta(factory, **kwargs):
    with torch.device("meta"):
        return factory(**kwargs)


def test_basic_resnet_counts_match_torchvision_without_fc():
    # torchvision resnet18 11,689,512 / resnet34 21,797,672, minus fc (512 * 1000 + 1000 = 513,000)
    assert count_parameters(meta(resnet18)) == 11_689_512 - 513_000
    assert count_parameters(meta(resnet34)) == 21_797_672 - 513_000


def test_basic_resnet_keys_are_torchvision_names():
    def bn(p):
        return [f"{p}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

    keys = ["conv1.weight", *bn("bn1")]
    for i, blocks in enumerate([2, 2, 2, 2], start=1):
        for b in range(blocks):
            p = f"layer{i}.{b}"
            keys += [f"{p}.conv1.weight", *bn(f"{p}.bn1"), f"{p}.conv2.weight", *bn(f"{p}.bn2")]
            if b == 0 and i > 1:  # layer1 keeps 64 channels and stride 1: no downsample
                keys += [f"{p}.downsample.0.weight", *bn(f"{p}.downsample.1")]
    model = meta(resnet18)
    assert list(model.state_dict()) == keys
    assert model.out_channels == {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
    feats = model(torch.empty(1, 3, 64, 64, device="meta"))
    assert {k: v.shape[-1] for k, v in feats.items()} == {"layer1": 16, "layer2": 8, "layer3": 4, "layer4": 2}


def test_basic_resnet_rejects_dilation_and_bottleneck_default_unchanged():
    with pytest.raises(ValueError, match="no dilation"):
        meta(resnet18, output_stride=16)
    assert meta(resnet101).block.__name__ == "Bottleneck"
    block = BasicBlock(8, 8).eval()
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        expected = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))) + x)
        assert torch.allclose(block(x), expected)


# ------------------------------------------------------------------------------------------- model
@pytest.mark.parametrize("size", [(64, 64), (48, 80), (50, 70)])
def test_shapes_in_training_and_eval(size):
    model = tiny_model()
    images, targets = batch(*size)
    out = model(images, targets)
    assert isinstance(out, SegOutput) and out.output_stride == model.output_stride == 1
    assert out.logits.shape == (2, 4, *size)
    assert set(out.latents) == LATENTS | POSTERIOR
    for prefix in ("", "post_"):
        assert out.latents[prefix + "pi"].shape == (2, 3)
        assert torch.allclose(out.latents[prefix + "pi"].sum(1), torch.ones(2))
        assert out.latents[prefix + "mu"].shape == out.latents[prefix + "logvar"].shape == (2, 3, 16)
    assert out.latents["g_mu"].shape == out.latents["g_logvar"].shape == (2, 16)
    assert set(out.extras()) == {"latents"}
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert out.logits.shape == (2, 4, *size) and set(out.latents) == LATENTS


def test_postnet_never_runs_at_inference():
    model = tiny_model()
    calls = []
    model.postnet.register_forward_hook(lambda module, args, output: calls.append(args[1].shape))
    images, targets = batch()
    model.eval()
    with torch.no_grad():
        model(images)
        model(images, targets)  # labels given in eval mode: still not used
    model.train()
    model(images)  # training mode without labels
    assert calls == []
    out = model(images, targets)
    assert calls == [targets.shape] and POSTERIOR <= set(out.latents)
    model.eval()
    shuffled = targets[torch.tensor([1, 0])]  # the "PostNet uses y" probe of spec B7.2
    with torch.no_grad():
        pi, mu, logvar = model.posterior(images, targets)
        pi_s, mu_s, _ = model.posterior(images, shuffled)
    assert pi.shape == (2, 3) and mu.shape == logvar.shape == (2, 3, 16)
    assert not torch.allclose(mu, mu_s)  # PostNet sees the labels


def test_one_hot_labels_zero_on_void():
    targets = torch.tensor([[[0, 2], [255, 1]]])
    expected = torch.zeros(1, 3, 2, 2)
    expected[0, 0, 0, 0] = expected[0, 2, 0, 1] = expected[0, 1, 1, 1] = 1
    assert torch.equal(one_hot_labels(targets, 3), expected)


def test_per_component_linear_is_k_separate_layers():
    layer = PerComponentLinear(3, 5, 2)
    x = torch.randn(4, 3, 5)
    expected = torch.stack([x[:, k] @ layer.weight[k].T + layer.bias[k] for k in range(3)], dim=1)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def r101_counts():
    """phgmm_r101, 12 classes, K = 12 (D = 256, D_z = M = 64, C_d = 36), counted by hand."""
    C, K, D, Dz, M, Cd = 12, 12, 256, 64, 64, 36
    trunk = 42_500_160  # torchvision resnet101 without fc (tests/models/test_model_resnet.py)
    levels = (256, 512, 1024, 2048)
    summary = sum(ch * 9 * C + C for ch in levels)
    mixture = summary + (4 * C * D + D) + 2 * (D * K * D + K * D) + (D * K + K)
    local_map = K * (D * Dz + Dz) + (K * Dz * 9 * 512 + 512)
    global_part = summary + 2 * (4 * C * D + D) + (D * M + M)
    decoder = (512 * Cd + Cd) + sum(ch * 9 * Cd + Cd for ch in levels) + 33 * (2 * Cd * Cd * 9 + 4 * Cd)
    head = 4 * (Cd * Cd * 9 + Cd) + (M * M * 9 + M) + ((4 * Cd + M) * 9 * Cd + Cd) + (Cd * C * 64 + C)
    postnet = trunk + (C * 64 * 49) + mixture  # conv1 sees 3 + C channels
    inference = trunk + mixture + local_map + global_part + decoder + head
    return inference, postnet


def test_r101_parameter_counts_exclude_postnet(capsys):
    """phgmm_r101 (12 classes, K = 12): 95,466,060 parameters in training, 50,918,864 at inference
    (PostNet 44,547,196); 52.20 GFLOPs at 384x768 (multiply-adds, FLOPS_CONVENTION)."""
    model = build_meta("phgmm_r101", num_classes=12, num_components=12)
    inference, postnet = r101_counts()
    assert count_parameters(model.postnet) == postnet == 44_547_196
    assert count_inference_parameters(model) == inference == 50_918_864
    assert count_parameters(model) == inference + postnet
    with capsys.disabled():
        print(f"\nphgmm_r101 C=12 K=12: {count_parameters(model):,} params with PostNet, "
              f"{count_inference_parameters(model):,} at inference")


def test_r101_flops_at_384x768_by_hand(capsys):
    C, K, D, Dz, M, Cd = 12, 12, 256, 64, 64, 36
    levels = (256, 512, 1024, 2048)
    hw = (96 * 192, 48 * 96, 24 * 48, 12 * 24)  # strides 4, 8, 16, 32
    model = build_meta("phgmm_r101", num_classes=C, num_components=K)
    trunk_macs = round(count_flops(meta(resnet101), (384, 768)) * 2**30)
    summaries = 2 * sum(C * ch * 9 * n for ch, n in zip(levels, hw))
    fcs = 4 * C * D + 2 * D * K * D + D * K + K * D * Dz + 2 * 4 * C * D + D * M
    z_conv = K * Dz * 512 * 9 * hw[3]
    units = 2 * Cd * Cd * 9 * (3 * hw[3] + 23 * hw[2] + 4 * hw[1] + 3 * hw[0])
    decoder = 512 * Cd * hw[3] + sum(Cd * ch * 9 * n for ch, n in zip(levels, hw)) + units
    head = sum(Cd * Cd * 9 * n for n in hw) + M * M * 9 * hw[3] + (4 * Cd + M) * Cd * 9 * hw[0]
    classifier = Cd * C * 64 * hw[0]  # transposed conv: per input pixel
    expected = trunk_macs + summaries + fcs + z_conv + decoder + head + classifier
    gflops = count_flops(model, (384, 768))
    assert round(gflops * 2**30) == expected
    assert gflops == pytest.approx(52.2, abs=0.05)
    with capsys.disabled():
        print(f"\nphgmm_r101 C=12 K=12 at 384x768: {gflops:.2f} GFLOPs (PostNet not run)")


def resnet18_macs(in_chans, h, w):
    """Multiply-adds of the ResNet-18 trunk (no fc) on an ``h x w`` image (sides multiples of 32), by hand."""
    px = {s: h * w // s**2 for s in (2, 4, 8, 16, 32)}
    macs = 64 * in_chans * 49 * px[2] + 4 * 64 * 64 * 9 * px[4]  # stem conv1; layer1: 2 blocks x 2 convs
    for cin, cout, stride in ((64, 128, 8), (128, 256, 16), (256, 512, 32)):  # layer2..4
        n = px[stride]
        macs += cout * cin * 9 * n + cout * cout * 9 * n + cout * cin * n  # block 1: conv1, conv2, downsample
        macs += 2 * cout * cout * 9 * n  # block 2
    return macs


def test_training_flops_exceed_inference_by_exactly_postnets_share(capsys):
    """Item 5 (issue 19): a training forward (targets given, train mode) runs PostNet; the inference
    count does not. The difference is PostNet's multiply-adds: its trunk on image + one-hot labels,
    the level summaries and the mixture FCs, by hand and by counting PostNet alone on its input."""
    from torch.utils.flop_counter import FlopCounterMode

    C, K, D, H, W = 4, TINY["num_components"], TINY["latent_dim"], 64, 96
    assert round(count_flops(meta(resnet18), (H, W)) * 2**30) == resnet18_macs(3, H, W)  # the hand count holds
    model = build_meta("phgmm_r18", num_classes=C, **TINY)
    model.eval()
    inference = round(count_flops(model, (H, W)) * 2**30)
    training = round(count_flops(model, (H, W), train=True) * 2**30)
    px = [H * W // s**2 for s in (4, 8, 16, 32)]
    postnet = (resnet18_macs(3 + C, H, W) + sum(C * ch * 9 * n for ch, n in zip((64, 128, 256, 512), px))
               + 4 * C * D + 2 * D * K * D + D * K)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.postnet(torch.empty(1, 3, H, W, device="meta"), torch.zeros(1, H, W, dtype=torch.long, device="meta"))
    assert counter.get_total_flops() // 2 == postnet
    assert training - inference == postnet
    assert not model.training  # the model's own mode is left alone
    with capsys.disabled():
        print(f"\nphgmm_r18 C=4 tiny at {H}x{W}: inference {inference:,} MACs, training forward {training:,} "
              f"(PostNet {postnet:,})")


def test_count_inference_parameters_keeps_shared_and_plain_models():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(3, 3)  # 9 + 3
            self.extra = nn.Sequential(nn.Linear(3, 2), nn.Linear(3, 3))  # 6 + 2, (9 shared) + 3
            self.extra[1].weight = self.used.weight  # shared with an inference module: stays counted

        def training_only_modules(self):
            return [self.extra]

    toy = Toy()
    assert count_parameters(toy) == 12 + 8 + 3
    assert count_inference_parameters(toy) == 12
    plain = nn.Linear(4, 2)
    assert count_inference_parameters(plain) == count_parameters(plain) == 10


def _latent_terms(out):
    lat = out.latents
    kl_z = gmm_kl(lat["pi"], lat["mu"], lat["logvar"], lat["post_pi"], lat["post_mu"], lat["post_logvar"]).mean()
    kl_g = gaussian_kl_standard(lat["g_mu"], lat["g_logvar"]).mean()
    return kl_z, kl_g


def _grads(module):
    return [p.grad for p in module.parameters()]


def test_gradient_routing_follows_algorithm_1():
    """Alg. 1 (P:196-198): PostNet <- l_z only, decoder <- l_s only, encoder <- all."""
    model = tiny_model()
    images, targets = batch()
    out = model(images, targets)
    ce, soft_iou = PHGMMLoss().segmentation_terms(out.logits, targets)
    (ce + soft_iou).mean().backward()
    assert all(g is None for g in _grads(model.postnet))
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(model.decoder))
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    kl_z, kl_g = _latent_terms(model(images, targets))
    kl_z.backward(retain_graph=True)
    assert sum(g.abs().sum() for g in _grads(model.postnet)) > 0
    assert model.postnet.backbone.conv1.weight.grad.abs().sum() > 0
    assert all(g is None for g in _grads(model.decoder))
    assert all(g is None for g in _grads(model.global_head))
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    kl_g.backward()
    assert all(g is None for g in [*_grads(model.postnet), *_grads(model.decoder), *_grads(model.local_head)])
    assert model.global_head.logvar.weight.grad.abs().sum() > 0


SWITCHES = [
    dict(),
    dict(use_global=False),
    dict(decoder_input="mean"),
    dict(upsample="deconv"),
    dict(postnet_backbone="resnet34"),
    dict(component_fc="shared", merge="add"),
    dict(num_components=1, decoder_width=5, in_chans=1, bn_momentum=0.01),
]


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
@pytest.mark.parametrize("kl_z", ["bound", "mc"])
def test_every_switch_trains(switches, kl_z):
    model = tiny_model(**switches)
    images, targets = batch(48, 80)
    images = images[:, : switches.get("in_chans", 3)]
    out = model(images, targets)
    assert out.logits.shape == (2, 4, 48, 80)
    result = PHGMMLoss(kl_z=kl_z, kl_samples=2)(out, targets)
    assert set(result.terms) == {"loss", "kl_g", "kl_z", "seg", "ce", "soft_iou"}
    result.total.backward()
    for name, param in model.named_parameters():
        if name.startswith("local_head.logits") and switches.get("num_components") == 1:
            continue  # softmax over one component: pi == 1, its logit has zero gradient
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    if switches.get("use_global") is False:
        assert not hasattr(model, "global_head") and "g_mu" not in out.latents
        assert result.terms["kl_g"] == 0
        assert model.head.fuse[0].in_channels == 4 * model.decoder_width
    if switches.get("upsample") == "deconv":
        assert all(up.weight.grad.abs().sum() > 0 for up in model.decoder.up)
    if "postnet_backbone" in switches:
        assert len(model.postnet.backbone.layer3) == 6 and isinstance(model.postnet.backbone.layer3[0], BasicBlock)
    if "decoder_width" in switches:
        assert model.head.classifier.in_channels == 5
    if switches.get("component_fc") == "shared":
        assert isinstance(model.local_map.fc, nn.Linear)  # one FC for all K components
    if switches.get("merge") == "add":
        assert model.head.fuse[0].in_channels == model.head.g_conv[0].out_channels == model.decoder_width


def test_dilated_encoder_switch():
    """backbone_output_stride 8: layer3/4 dilated; the decoder upsamples only where the stride halves."""
    torch.manual_seed(0)
    model = build_model("phgmm_r50", num_classes=4, backbone_output_stride=8, upsample="deconv", **TINY)
    assert model.backbone.strides == {"layer1": 4, "layer2": 8, "layer3": 8, "layer4": 8}
    assert [type(m).__name__ for m in model.decoder.up] == ["Identity", "Identity", "ConvTranspose2d"]
    images, targets = batch(48, 80)
    out = model(images, targets)
    assert out.logits.shape == (2, 4, 48, 80)
    PHGMMLoss()(out, targets).total.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("decoder_input, pi_reaches_logits", [("weighted", True), ("mean", False)])
def test_decoder_input_weights_means_by_pi(decoder_input, pi_reaches_logits):
    """u_k = pi^k mu^k (P:139) lets the logits depend on pi; plain mu^k (P:125) does not."""
    model = tiny_model(decoder_input=decoder_input)
    images, _ = batch()
    model(images).logits.square().mean().backward()
    grad = model.local_head.logits.weight.grad
    assert (grad is not None and grad.abs().sum() > 0) == pi_reaches_logits


def test_postnet_backbone_and_encoder_depths():
    model = build_meta("phgmm_r50", num_classes=12, postnet_backbone="resnet18")
    assert [len(model.backbone.layer3), len(model.postnet.backbone.layer3)] == [6, 2]
    assert model.postnet.backbone.conv1.in_channels == 3 + 12
    assert model.pretrained_prefix == "backbone." and isinstance(model.backbone, ResNetBackbone)
    same = build_meta("phgmm_r101", num_classes=5)
    assert len(same.postnet.backbone.layer3) == 23 and same.num_components == 12
    assert same.decoder_width == 15 and [len(g.units) for g in same.decoder.groups] == [3, 23, 4, 3]


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_components=0), "model.num_components must be an integer >= 1 (got 0)"),
    (dict(num_components=True), "model.num_components must be an integer >= 1 (got True)"),
    (dict(num_components=2.0), "model.num_components must be an integer >= 1 (got 2.0)"),
    (dict(latent_dim=0), "model.latent_dim must be an integer >= 1"),
    (dict(z_map_channels=-1), "model.z_map_channels must be an integer >= 1"),
    (dict(g_map_channels="8"), "model.g_map_channels must be an integer >= 1"),
    (dict(decoder_width=0), "model.decoder_width must be null"),
    (dict(use_global="yes"), "model.use_global must be true or false"),
    (dict(decoder_input="sample"), "model.decoder_input must be one of weighted, mean (got 'sample')"),
    (dict(upsample="nearest"), "model.upsample must be one of bilinear, deconv"),
    (dict(postnet_backbone="resnet152"), "model.postnet_backbone must be one of same, resnet18"),
    (dict(in_chans=0), "model.in_chans must be an integer >= 1"),
    (dict(bn_momentum=0), "model.bn_momentum must be a number in"),
    (dict(num_classes=0), "model.num_classes must be an integer >= 1"),
    (dict(component_fc="tied"), "model.component_fc must be one of separate, shared"),
    (dict(merge="sum"), "model.merge must be one of concat, add"),
    (dict(backbone_output_stride=16), "model.backbone_output_stride must be 32 for a resnet18 encoder (got 16)"),
    (dict(pretrained=True), "model.pretrained is not an option of model 'phgmm_r18'"),
])
def test_bad_arguments_give_one_line_config_errors(kwargs, message):
    kwargs = {"num_classes": 4, **kwargs}
    with pytest.raises(ConfigError) as info:
        build_meta("phgmm_r18", **kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
