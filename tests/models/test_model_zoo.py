"""Every registered model builds, runs forward + backward on a tiny input, with the documented shapes."""
import pytest
import torch

from seglab.models import SegOutput, build_model, list_models

EXPECTED_MODELS = [
    f"{method}hrnet_{width}"
    for method in ("", "ovenet_")
    for width in ("w18_small_v1", "w18_small_v2", "w18", "w32", "w48")
]
EXPECTED_MODELS += [f"{method}hrnet_{w}_ocr" for method in ("", "ovenet_")
                    for w in ("w18_small_v1", "w18_small_v2", "w18", "w32", "w48")]
EXPECTED_MODELS += ["deeplabv3plus_r50", "deeplabv3plus_r101", "deeplabv2_r101", "fcn_r50", "unet"]
EXPECTED_MODELS += ["phgmm_r18", "phgmm_r50", "phgmm_r101"]
# Stride of the logits where it is not 4 (64x64 input -> 64 / stride per side).
LOGIT_STRIDE = {"deeplabv2_r101": 8, "unet": 1, "phgmm_r18": 1, "phgmm_r50": 1, "phgmm_r101": 1}
# Image-level latent tensors (SegOutput.latents) of an eval-style forward without targets.
LATENT_KEYS = {"phgmm_r18": {"pi", "mu", "logvar", "g_mu", "g_logvar"}}
LATENT_KEYS["phgmm_r50"] = LATENT_KEYS["phgmm_r101"] = LATENT_KEYS["phgmm_r18"]




def test_registered_names():
    assert sorted(EXPECTED_MODELS) == list_models()


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_tiny_input(name):
    torch.manual_seed(0)
    num_classes = 5
    model = build_model(name, num_classes=num_classes)
    stride = LOGIT_STRIDE.get(name, 4)
    assert model.output_stride == stride
    images = torch.randn(2, 3, 64, 64)
    out = model(images)
    assert isinstance(out, SegOutput)
    assert out.output_stride == stride
    assert out.logits.shape == (2, num_classes, 64 // stride, 64 // stride)
    maps = {"logits": out.logits, **out.extras()}
    latents = maps.pop("latents", {})
    assert set(latents) == LATENT_KEYS.get(name, set())
    if name.startswith("ovenet_"):
        class_maps = {"final_logits", "initial_logits", "seed_logits"}
        if name.endswith("_ocr"):
            class_maps |= {"aux_logits", "initial_aux_logits", "seed_aux_logits"}
        assert set(maps) == {"logits", "offsets", "confidence", *class_maps}
        for key in class_maps:
            assert maps[key].shape == (2, num_classes, 16, 16)
        assert out.offsets.shape == (2, 2, 16, 16)
        assert out.confidence.shape == (2, 1, 16, 16)
        assert out.offsets.abs().max() <= model.tau
        assert ((out.confidence >= 0) & (out.confidence <= 1)).all()
    elif name.endswith("_ocr"):
        assert set(maps) == {"logits", "aux_logits"}
        assert out.aux_logits.shape == (2, num_classes, 16, 16)
    else:
        assert set(maps) == {"logits"}
    loss = sum(m.float().square().mean() for m in [*maps.values(), *latents.values()])
    loss.backward()
    # modules that run in training with labels only (PHGMM's PostNet) get no gradient here
    training_only = {id(p) for m in getattr(model, "training_only_modules", list)() for p in m.parameters()}
    for param_name, param in model.named_parameters():
        if id(param) in training_only:
            continue
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
    classifier = model.classifier if name == "unet" else model.head.classifier  # DeepLabV2: 4 summed convs
    head_grad = sum(p.grad.abs().sum() for n, p in classifier.named_parameters() if n.endswith("weight"))
    assert head_grad > 0


# The smallest model of each family: a family's models share their forward code and differ in widths
# and depths only (test_forward_backward_tiny_input above runs every registered model's forward).
FAMILY_SMALLEST = {
    "HRNet": "hrnet_w18_small_v1", "HRNet+OCR": "hrnet_w18_small_v1_ocr",
    "OVeNet": "ovenet_hrnet_w18_small_v1", "OVeNet+OCR": "ovenet_hrnet_w18_small_v1_ocr",
    "DeepLabV3+": "deeplabv3plus_r50", "DeepLabV2": "deeplabv2_r101", "FCN": "fcn_r50", "UNet": "unet",
    "PHGMM": "phgmm_r18",
}


def test_every_registered_model_has_a_family():
    """Each registered model is one of FAMILY_SMALLEST's families (a new family needs its entry)."""
    def family(name):
        for prefix, fam in (("ovenet_hrnet_", "OVeNet"), ("hrnet_", "HRNet"), ("deeplabv3plus_", "DeepLabV3+"),
                            ("deeplabv2_", "DeepLabV2"), ("fcn_", "FCN"), ("unet", "UNet"), ("phgmm_", "PHGMM")):
            if name.startswith(prefix):
                return fam + ("+OCR" if name.endswith("_ocr") else "")
        return None

    families = {name: family(name) for name in list_models()}
    assert None not in families.values(), families
    assert set(families.values()) == set(FAMILY_SMALLEST)
    assert all(families[name] == fam for fam, name in FAMILY_SMALLEST.items())


@pytest.mark.parametrize("name", sorted(FAMILY_SMALLEST.values()))
def test_training_forward_flops_every_model(name):
    """count_flops(train=True) runs the training forward (dummy targets, train mode, on the meta device)
    of the smallest model of every family; only models with training-only modules (PHGMM's PostNet)
    count more than inference."""
    from seglab.models.complexity import count_flops
    from tests.models.conftest import build_meta

    model = build_meta(name, num_classes=5)
    inference = count_flops(model, input_size=(64, 64))
    training = count_flops(model, input_size=(64, 64), train=True)
    assert model.training  # left as built
    if hasattr(model, "training_only_modules"):
        assert training > inference > 0
    else:
        assert training == inference > 0


def test_odd_input_size_rounds_up():
    model = build_model("hrnet_w18_small_v1", num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 50, 70))
    assert out.logits.shape == (1, 3, 13, 18)  # ceil(ceil(50 / 2) / 2), ceil(ceil(70 / 2) / 2)
