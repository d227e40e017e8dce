import pytest

from seglab.errors import ConfigError
from seglab.platform.config import RunConfig, TrainerConfig, flatten, set_dotted
from seglab.platform.sweep import SweepConfig, plan_trials
from seglab.platform.train.schedule import poly_lr

BASE = {
    "model": {"name": "ovenet_hrnet_w18_small_v1", "tau": 0.5, "pretrained": None},
    "loss": {"name": "ovenet", "kappa": 0.5, "lam": 0.5, "conf_weight": 1.0},
    "dataset": {"name": "synthetic", "image_size": [32, 64], "train": {"num_samples": 4}, "val": {"num_samples": 2}},
    "trainer": {"num_workers": 2, "cpus_per_worker": 0.9, "epochs": 1},
}


def test_run_config_round_trip_and_key_stability():
    run = RunConfig.from_dict(BASE)
    assert run.model.kwargs == {"tau": 0.5}
    assert run.dataset.split_kwargs("train") == {"image_size": [32, 64], "num_samples": 4}
    again = RunConfig.from_dict(run.to_dict())
    assert again.to_dict() == run.to_dict()
    assert again.key() == run.key()
    other = RunConfig.from_dict(set_dotted(BASE, "loss.kappa", 0.25))
    assert other.key() != run.key()


@pytest.mark.parametrize("key,value,fragment", [
    ("trainer.num_workers", 0, "trainer.num_workers"),
    ("trainer.epochs", -3, "trainer.epochs"),
    ("trainer.lr", 0.0, "trainer.lr"),
    ("trainer.use_gpu", "maybe", "trainer.use_gpu"),
    ("trainer.bogus", 1, "trainer.bogus"),
])
def test_trainer_errors_name_the_key(key, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RunConfig.from_dict(set_dotted(BASE, key, value))


def test_flatten_and_set_dotted():
    assert flatten({"a": {"b": 1, "c": {"d": [2]}}, "e": 3}) == {"a.b": 1, "a.c.d": [2], "e": 3}
    d = set_dotted({"a": {"b": 1}}, "a.c", 2)
    assert d == {"a": {"b": 1, "c": 2}}


def test_plan_grid_has_baseline_first_and_all_combinations():
    sweep = SweepConfig.from_dict({"kappa": [0.25, 0.5], "lam": [0.5], "tau": [0.2, 0.5, 1.0]})
    runs = plan_trials(BASE, sweep)
    assert len(runs) == 1 + 2 * 1 * 3
    assert runs[0].baseline and runs[0].model.name == "hrnet_w18_small_v1" and runs[0].loss.name == "ce"
    assert runs[0].model.kwargs == {}  # no OVeNet switches leak into the baseline
    points = {(r.loss.kwargs["kappa"], r.model.kwargs["tau"]) for r in runs[1:]}
    assert points == {(k, t) for k in (0.25, 0.5) for t in (0.2, 0.5, 1.0)}
    assert all(r.trainer == runs[0].trainer for r in runs)  # equal schedule for every trial
    assert "κ=0.25" in runs[1].label and "τ=0.2" in runs[1].label


def test_unsearched_dimensions_keep_the_config_values():
    runs = plan_trials(BASE, SweepConfig.from_dict({"kappa": None, "lam": None, "tau": None}))
    assert len(runs) == 2
    assert runs[1].model.kwargs["tau"] == 0.5 and runs[1].loss.kwargs == {"kappa": 0.5, "lam": 0.5, "conf_weight": 1.0}


def test_plan_random_is_seeded_and_in_bounds():
    cfg = {"search": "random", "num_samples": 5, "seed": 3, "kappa": {"uniform": [0.1, 1.0]},
           "tau": {"loguniform": [0.1, 1.0]}, "lam": [0.5]}
    a = plan_trials(BASE, SweepConfig.from_dict(cfg))
    b = plan_trials(BASE, SweepConfig.from_dict(cfg))
    assert [r.key() for r in a] == [r.key() for r in b]
    assert len(a) == 6
    for r in a[1:]:
        assert 0.1 <= r.loss.kwargs["kappa"] <= 1.0 and 0.1 <= r.model.kwargs["tau"] <= 1.0


@pytest.mark.parametrize("cfg,fragment", [
    ({"search": "grid", "kappa": {"uniform": [0, 1]}}, "sweep.kappa is a distribution"),
    ({"kappa": []}, "sweep.kappa is an empty list"),
    ({"search": "random", "tau": {"loguniform": [0, 1]}}, "sweep.tau.loguniform needs lo > 0"),
    ({"search": "bayes"}, "sweep.search must be one of grid, random, optuna"),
    ({"tau": [0.5, 0.0]}, "sweep.tau values must be > 0"),
    ({"kappa": -0.1}, "sweep.kappa values must be >= 0"),
    ({"search": "random", "lam": {"uniform": [-1, 1]}}, "sweep.lam values must be >= 0"),
    ({"nonsense": 1}, "unknown key sweep.nonsense"),
])
def test_sweep_config_errors(cfg, fragment):
    with pytest.raises(ConfigError, match=fragment):
        SweepConfig.from_dict(cfg)


def test_poly_lr_hand_values():
    assert poly_lr(0.01, 0, 100, 0.9) == 0.01
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert poly_lr(0.01, 100, 100, 0.9) == 0.0
    # warm-up: (step + 1) / warmup_steps of the poly value, then the poly value itself
    assert poly_lr(0.01, 0, 100, 0.9, warmup_steps=10) == pytest.approx(0.001)
    assert poly_lr(0.01, 4, 100, 0.9, warmup_steps=10) == pytest.approx(0.01 * 0.96 ** 0.9 * 0.5)
    assert poly_lr(0.01, 10, 100, 0.9, warmup_steps=10) == pytest.approx(0.01 * 0.9 ** 0.9)


def test_trainer_defaults_are_the_papers():
    t = TrainerConfig()
    assert (t.momentum, t.weight_decay, t.poly_power) == (0.9, 5e-4, 0.9)


def test_plan_models_one_trial_per_model_first_is_reference():
    sweep = SweepConfig.from_dict({"models": ["hrnet_w18_small_v1", {"name": "hrnet_w18_small_v2", "bn_momentum": 0.01}]})
    runs = plan_trials(set_dotted(BASE, "loss", {"name": "ce"}), sweep)
    assert [r.model.name for r in runs] == ["hrnet_w18_small_v1", "hrnet_w18_small_v2"]
    assert [r.baseline for r in runs] == [True, False]
    assert runs[1].model.kwargs == {"bn_momentum": 0.01} and runs[0].model.kwargs == {}
    assert all(r.loss.name == "ce" and r.trainer == runs[0].trainer for r in runs)
    with pytest.raises(ConfigError, match="exclude each other"):
        SweepConfig.from_dict({"models": ["hrnet_w18_small_v1"], "tau": [0.5]})
    with pytest.raises(ConfigError, match="same model twice"):
        plan_trials(BASE, SweepConfig.from_dict({"models": ["hrnet_w18_small_v1", "hrnet_w18_small_v1"]}))


def test_loader_workers_auto_decodes_files_in_worker_processes_on_gpu(tmp_path):
    from seglab.datasets import build_dataset
    from seglab.datasets.fixtures.cityscapes import write_cityscapes
    from seglab.platform.train.sampler import resolve_loader_workers

    write_cityscapes(tmp_path, splits={"train": 1}, size=(32, 64))
    files = build_dataset("cityscapes", split="train", root=str(tmp_path), crop_size=[32, 64])
    generated = build_dataset("synthetic", split="train", num_samples=1)
    assert [resolve_loader_workers("auto", files, True, c) for c in (1.0, 4.0, 16.0)] == [2, 3, 8]
    assert resolve_loader_workers("auto", files, False, 4.0) == 0  # CPU-only: the trainer uses the CPUs
    assert resolve_loader_workers("auto", generated, True, 4.0) == 0  # nothing to decode
    assert resolve_loader_workers(5, files, False, 1.0) == 5
    with pytest.raises(ConfigError, match="trainer.loader_workers must be auto or an integer >= 0"):
        RunConfig.from_dict(set_dotted(BASE, "trainer.loader_workers", "many"))
