"""The method extension point: which method owns a run, search keys, labels, evaluators (that the
generic machinery never names a method is tests/test_architecture.py's)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from seglab.errors import ConfigError
from seglab.platform import methods
from seglab.platform.config import RunConfig
from seglab.platform.evaluation import EvalBatch, EvalContext, PredictionEvaluator, SegmentationEvaluator, evaluate
from seglab.platform.sweep.plan import SweepConfig, plan_trials, run_for_point

from tests.platform.sweep.test_plan import _compose

REPO = Path(__file__).resolve().parents[3]


def _run(model="hrnet_w18_small_v1", loss="ce", **loss_kw):
    return RunConfig.from_dict({"model": {"name": model}, "loss": {"name": loss, **loss_kw},
                                "dataset": {"name": "synthetic", "image_size": [32, 64]}})


@pytest.mark.parametrize("model,loss,method,tag", [
    ("ovenet_hrnet_w18_small_v1", "ovenet", "ovenet", "ovenet"),
    ("hrnet_w18_small_v1", "ce", "generic", "hrnet"),
    ("deeplabv3plus_r50", "semeda", "semeda", "semeda"),
    ("deeplabv3plus_r50", "sobel", "semeda", "sobel"),
    ("deeplabv3plus_r50", "ce", "generic", "deeplabv3plus"),
    ("phgmm_r18", "phgmm", "phgmm", "phgmm"),
])
def test_a_run_belongs_to_the_method_of_its_loss_or_model(model, loss, method, tag):
    run = _run(model, loss)
    assert methods.for_run(run).name == method
    assert methods.tag(run) == tag


def test_labels_are_written_by_the_method():
    assert methods.describe(_run("ovenet_hrnet_w18_small_v1", "ovenet", kappa=0.5, lam=0.25)) == \
        "ovenet_hrnet_w18_small_v1 κ=0.5 λ=0.25"
    assert methods.describe(_run("deeplabv3plus_r50", "semeda", lambda1=4, lambda2=2, lambda3=0)) == \
        "deeplabv3plus_r50 SEMEDA λ=(4,2,0)"
    assert methods.describe(_run("unet", "sobel", lambda1=0.5)) == "unet Sobel λ1=0.5"
    assert methods.describe(_run()) == "hrnet_w18_small_v1"


def test_search_keys_come_from_every_method():
    keys = methods.search_keys()
    assert {"kappa", "lam", "tau", "lambda1", "lambda2", "lambda3"} <= set(keys)
    assert keys["tau"].key == "model.tau" and not keys["tau"].inclusive
    base = _run("deeplabv3plus_r50", "semeda").to_dict()
    run = run_for_point(base, {"lambda1": 2.0, "lambda3": 0.25})
    assert run.loss.kwargs["lambda1"] == 2.0 and run.loss.kwargs["lambda3"] == 0.25
    with pytest.raises(ConfigError, match=r"sweep.lambda2 values must be >= 0"):
        SweepConfig.from_dict({"lambda2": [1.0, -0.5]})


def test_a_sweeps_method_is_the_one_owning_its_base_run():
    base, sweep = _compose(["sweep=ovenet_ablation"])
    assert methods.for_sweep(base, plan_trials(base, sweep)).name == "ovenet"
    base = _run("deeplabv3plus_r50", "semeda").to_dict()
    assert methods.for_sweep(base, []).name == "semeda"
    assert methods.for_sweep(_run().to_dict(), []) is methods.GENERIC


def test_a_trial_gets_its_own_and_its_sweeps_methods_once():
    baseline = _run("deeplabv3plus_r50", "ce")
    assert [m.name for m in methods.for_trial(baseline, "semeda").methods] == ["generic", "semeda"]
    semeda = _run("deeplabv3plus_r50", "semeda")
    assert [m.name for m in methods.for_trial(semeda, "semeda").methods] == ["semeda"]
    assert [m.name for m in methods.for_trial(semeda).methods] == ["semeda"]


class _Out:
    def __init__(self, logits, initial=None):
        self.logits, self.initial_logits = logits, initial


def _ctx(groups=None):
    return EvalContext(num_classes=3, ignore_index=255, class_names=["a", "b c", "d"], palette=[(0, 0, 0)] * 3,
                       device=torch.device("cpu"), groups=groups)


def test_segmentation_evaluator_scores_and_groups_match_a_hand_count():
    # labels / predictions of two 1x4 images: image 0 (group x) 3 of 4 right, image 1 (group y) all right
    labels = torch.tensor([[[0, 0, 1, 255]], [[2, 2, 1, 1]]])
    pred = torch.tensor([[[0, 1, 1, 2]], [[2, 2, 1, 1]]])
    logits = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    ev = SegmentationEvaluator(_ctx(groups=["x", "y"]))
    ev.process(EvalBatch(torch.zeros(2, 3, 1, 4), labels, [0, 1], _Out(logits), None))
    m = ev.metrics()
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 3, FP 1 -> 3/4; class 2: TP 2 -> 1
    assert m["val_miou"] == pytest.approx((0.5 + 0.75 + 1.0) / 3)
    assert m["val_pixel_acc"] == pytest.approx(6 / 7)
    assert m["val_iou_b_c"] == pytest.approx(0.75)
    assert m["val_miou_x"] == pytest.approx((0.5 + 0.5) / 2) and m["val_miou_y"] == pytest.approx(1.0)


def test_a_rank_without_validation_samples_still_reports_every_group():
    """Every rank creates every group's matrix up front: a shard with no sample (or no sample of
    a group) still issues the same all-reduce sequence and reports the group (NaN here)."""
    ev = SegmentationEvaluator(_ctx(groups=["x", "y", "x"]))
    metrics = evaluate(torch.nn.Identity(), [], [ev], torch.device("cpu"))
    assert set(ev.group_matrices) == {"x", "y"}
    assert {"val_miou_x", "val_miou_y", "val_miou"} <= set(metrics)


def test_prediction_evaluator_skips_maps_no_batch_had():
    labels = torch.tensor([[[0, 1]]])
    logits = torch.tensor([[[[5.0, 0.0]], [[0.0, 5.0]], [[0.0, 0.0]]]])
    ev = PredictionEvaluator(_ctx(), {"initial_logits": "val_miou_initial", "seed_logits": "val_miou_seed"})
    ev.process(EvalBatch(torch.zeros(1, 3, 1, 2), labels, [0], _Out(logits, initial=logits), None))
    ev.all_reduce()
    assert ev.metrics() == {"val_miou_initial": 1.0}


def test_latent_evaluator_clusters_component_means_and_probes_postnet():
    """Points are the component means of every image labelled by component; the KL terms are the
    matched-component bound against PostNet's mixture with the true and with rolled labels."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    from seglab.losses import gaussian_kl_standard, gmm_kl
    from seglab.platform.methods.phgmm import LatentEvaluator

    g = torch.Generator().manual_seed(0)
    B, K, D = 3, 2, 4
    mu = torch.randn(B, K, D, generator=g) + torch.tensor([0.0, 5.0])[None, :, None]
    logvar, pi = torch.zeros(B, K, D), torch.tensor([[0.3, 0.7]] * B)
    latents = {"pi": pi, "mu": mu, "logvar": logvar, "g_mu": torch.ones(B, D), "g_logvar": torch.zeros(B, D)}
    labels = torch.tensor([[[0, 1]], [[1, 1]], [[0, 0]]])

    class Model:
        def posterior(self, images, targets):  # a mixture that depends on the labels it is given
            shift = targets.float().mean(dim=(1, 2))[:, None, None]
            return pi, mu + shift, logvar

    ev = LatentEvaluator(_ctx())
    out = type("Out", (), {"logits": None, "latents": latents})()
    ev.process(EvalBatch(torch.zeros(B, 3, 1, 2), labels, [0, 1, 2], out, Model()))
    ev.all_reduce()
    m = ev.metrics()
    true = gmm_kl(pi, mu, logvar, *Model().posterior(None, labels)).mean()
    rolled = gmm_kl(pi, mu, logvar, *Model().posterior(None, labels.roll(1, dims=0))).mean()
    assert m["val_kl_z"] == pytest.approx(float(true)) and m["val_kl_z_shuffled"] == pytest.approx(float(rolled))
    assert m["val_kl_g"] == pytest.approx(float(gaussian_kl_standard(latents["g_mu"], latents["g_logvar"]).mean()))
    points, by_component = mu.reshape(-1, D).numpy(), [0, 1] * B
    assert m["val_ssi"] == pytest.approx(silhouette_score(points, by_component))
    assert m["val_chi"] == pytest.approx(calinski_harabasz_score(points, by_component))
    assert m["val_dbi"] == pytest.approx(davies_bouldin_score(points, by_component))
    assert m["val_pi_entropy"] == pytest.approx(-(0.3 * np.log(0.3) + 0.7 * np.log(0.7)))
    assert set(ev.pictures()) == {"latents_pca", "mixture_weights"}
