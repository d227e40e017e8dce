"""Sweep planning: the ablation's seven variants, Optuna/ASHA glue, the ablation table."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seglab.errors import ConfigError
from seglab.platform.sweep.plan import (FROM_BASELINE, SweepConfig, plan_trials, representative_point, run_for_point,
                                  split_phases)
from seglab.platform.methods.ovenet import format_ablation_table
from seglab.platform.report.table import markdown_table
from tests.conftest import new_mlflow_store

CONF = str(Path(__file__).resolve().parents[3] / "experiments" / "conf")


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)
    sweep = cfg.pop("sweep")
    return cfg, SweepConfig.from_dict(sweep)


def test_ablation_sweep_expands_to_seven_variants_plus_the_baseline():
    base, sweep = _compose(["sweep=ovenet_ablation"])
    runs = plan_trials(base, sweep)
    baseline, variants = runs[0], runs[1:]
    assert len(variants) == 7
    assert baseline.baseline and baseline.model.name == "hrnet_w18_small_v1" and baseline.loss.name == "ohem"
    switches = {r.label: (r.model.kwargs["freeze_body"], r.model.kwargs["branch_stage"], r.model.kwargs["tau"],
                          r.model.kwargs["cascade_steps"], r.loss.kwargs["criterion"]) for r in variants}
    assert switches == {
        "Br4 τ0.5 OHEM": (False, 4, 0.5, 0, "ohem"),
        "Fr Br4 τ0.5 OHEM": (True, 4, 0.5, 0, "ohem"),
        "Br4 τ1 OHEM": (False, 4, 1.0, 0, "ohem"),
        "Br4 τ0.2 OHEM": (False, 4, 0.2, 0, "ohem"),
        "Br4 τ0.2 CE": (False, 4, 0.2, 0, "ce"),
        "Br3 τ0.2 OHEM": (False, 3, 0.2, 0, "ohem"),
        "Br4 τ0.2 OHEM Ref2": (False, 4, 0.2, 2, "ohem"),
    }
    assert all(r.model.name == "ovenet_hrnet_w18_small_v1" and r.loss.name == "ovenet" for r in variants)
    assert all(r.trainer == baseline.trainer and r.dataset == baseline.dataset for r in variants)
    now, later = split_phases(runs)
    assert [r.label for r in later] == ["Fr Br4 τ0.5 OHEM"] and later[0].model.body_checkpoint == FROM_BASELINE
    assert len(now) == 7 and now[0].baseline


def test_variants_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"sweep.variants\[0\] needs a label"):
        SweepConfig.from_dict({"variants": [{"model": {"tau": 0.2}}]})
    with pytest.raises(ConfigError, match=r"sweep.variants\[0\].trainer"):
        SweepConfig.from_dict({"variants": [{"label": "a", "trainer": {"epochs": 2}}]})
    with pytest.raises(ConfigError, match="label 'a' is used twice"):
        SweepConfig.from_dict({"variants": [{"label": "a"}, {"label": "a", "model": {"tau": 0.2}}]})
    with pytest.raises(ConfigError, match="variants and a search space exclude each other"):
        SweepConfig.from_dict({"variants": [{"label": "a"}], "tau": [0.2]})
    base, _ = _compose([])
    sweep = SweepConfig.from_dict({"include_baseline": False,
                                   "variants": [{"label": "fr", "model": {"body_checkpoint": FROM_BASELINE}}]})
    with pytest.raises(ConfigError, match="needs the sweep's baseline run"):
        plan_trials(base, sweep)


def test_kappa_lambda_tau_sweep_is_optuna_with_asha_and_a_baseline():
    base, sweep = _compose(["sweep=ovenet_kappa_lambda_tau"])
    assert sweep.search == "optuna" and sweep.scheduler == "asha"
    assert sweep.space["tau"] == [0.1, 0.2, 0.5, 1.0]
    runs = plan_trials(base, sweep)
    assert len(runs) == 1 and runs[0].baseline  # the method's runs are proposed while the sweep runs
    point = representative_point(sweep)
    assert point == {"kappa": 0.1, "lam": 0.1, "tau": 0.1}
    run = run_for_point(base, point)
    assert (run.loss.kwargs["kappa"], run.loss.kwargs["lam"], run.model.kwargs["tau"]) == (0.1, 0.1, 0.1)
    # the grid form of the same sweep: every (kappa, lam, tau) combination plus the baseline
    _, grid = _compose(["sweep=ovenet_kappa_lambda_tau_grid", "sweep.kappa=[0.25,0.5]", "sweep.lam=[0.5]"])
    assert len(plan_trials(base, grid)) == 1 + 2 * 1 * 4


@pytest.mark.parametrize("cfg,fragment", [
    ({"search": "optuna"}, "sweep.search=optuna needs at least one of"),
    ({"scheduler": "hyperband"}, "sweep.scheduler must be null or one of asha"),
    ({"asha": {"grace_period": 0}}, "sweep.asha.grace_period must be an integer >= 1"),
    ({"asha": {"reduction_factor": 1}}, "sweep.asha.reduction_factor must be > 1"),
    ({"asha": {"brackets": 2}}, "sweep.asha must be"),
    ({"baseline_loss": {"kappa": 1}}, "sweep.baseline_loss must be a loss name"),
])
def test_search_config_errors(cfg, fragment):
    with pytest.raises(ConfigError, match=fragment):
        SweepConfig.from_dict(cfg)


def test_fixed_then_optuna_searcher_hands_out_the_baseline_first_then_seeded_points():
    from seglab.platform.sweep.search import make_searcher

    sweep = SweepConfig.from_dict({"search": "optuna", "seed": 7, "kappa": {"uniform": [0.1, 1.0]},
                                   "tau": [0.1, 0.2, 0.5, 1.0]})

    def searcher():
        return make_searcher(sweep, [{"trial": {"baseline": True}}], lambda p: {"trial": {"point": p}})

    a, b = searcher(), searcher()
    assert a.suggest("t0") == {"trial": {"baseline": True}}
    points = [a.suggest(f"t{i}")["trial"]["point"] for i in (1, 2, 3)]
    assert [b.suggest(f"t{i}")["trial"].get("point") for i in (0, 1, 2, 3)][1:] == points  # seeded
    for p in points:
        assert 0.1 <= p["kappa"] <= 1.0 and p["tau"] in (0.1, 0.2, 0.5, 1.0)
    # the baseline's result never reaches Optuna; a method trial's does
    a.on_trial_complete("t0", {"val_miou": 0.9, "training_iteration": 1})
    a.on_trial_complete("t1", {"val_miou": 0.4, "training_iteration": 1})
    study = a.inner._ot_study
    assert [t.value for t in study.trials if t.value is not None] == [0.4]


def test_asha_never_stops_the_baseline_and_stops_the_others_through_their_marker(tmp_path):
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from seglab.platform.sweep.search import make_scheduler
    from seglab.platform.train.hooks import stop_marker

    base, _ = _compose(["trainer.epochs=4"])
    sched = make_scheduler(SweepConfig.from_dict({"scheduler": "asha", "asha": {"grace_period": 1,
                                                                                 "reduction_factor": 2}}), 4)
    results = [(False, 0.9, 0.25), (False, 0.8, 0.5), (True, 0.1, None), (False, 0.1, 1.0)]
    trials, keys = [], []
    for i, (baseline, _, kappa) in enumerate(results):
        run = run_for_point(base, {"kappa": kappa}) if not baseline else plan_trials(base, SweepConfig())[0]
        keys.append(run.key())
        t = Trial("trainable", config={"trial": run.to_dict(), "ctx": {"storage_path": str(tmp_path)}},
                  stub=True, trial_id=f"t{i}")
        sched.on_trial_add(None, t)
        trials.append(t)
    decisions = [sched.on_trial_result(None, t, {"training_iteration": 1, "progress": 0.25, "val_miou": v})
                 for t, (_, v, _) in zip(trials, results)]
    # Tune is never asked to kill a trial: the ones ASHA cuts get a stop marker and end themselves.
    assert decisions == [TrialScheduler.CONTINUE] * 4
    # Rung 1 keeps the top 1/2: 0.9 goes on; 0.8 and 0.1 fall below the cut; the baseline (0.1) runs on.
    stopped = [stop_marker(str(tmp_path), k).exists() for k in keys]
    assert stopped == [False, True, False, True]
    assert "val_miou=0.8" in stop_marker(str(tmp_path), keys[1]).read_text()
    assert make_scheduler(SweepConfig.from_dict({}), 4) is None


def _asha_trial(base, tmp_path, kappa, trial_id, **trainer):
    from ray.tune.experiment import Trial

    d = base
    if trainer:
        d = {**base, "trainer": {**base["trainer"], **trainer}}
    run = run_for_point(d, {"kappa": kappa})
    return run, Trial("trainable", config={"trial": run.to_dict(), "ctx": {"storage_path": str(tmp_path)}},
                      stub=True, trial_id=trial_id)


def test_asha_never_cuts_a_confirm_phase_run(tmp_path):
    """Issue 19 item 1: the chosen configuration's fresh seeds train their full schedule (and the
    confirm phase gets no scheduler at all, see test_only_the_search_phase_gets_a_scheduler)."""
    from ray.tune.schedulers import TrialScheduler

    from seglab.platform.sweep.search import make_scheduler
    from seglab.platform.train.hooks import stop_marker

    base, _ = _compose(["trainer.epochs=4"])
    sched = make_scheduler(SweepConfig.from_dict({"scheduler": "asha", "asha": {"grace_period": 1,
                                                                                 "reduction_factor": 2}}), 4)
    good, t_good = _asha_trial(base, tmp_path, 0.25, "g")
    confirm_run = run_for_point(base, {"kappa": 0.5})
    confirm_run.phase = "confirm"
    from ray.tune.experiment import Trial

    t_confirm = Trial("trainable", config={"trial": confirm_run.to_dict(), "ctx": {"storage_path": str(tmp_path)}},
                      stub=True, trial_id="c")
    for t in (t_good, t_confirm):
        sched.on_trial_add(None, t)
    sched.on_trial_result(None, t_good, {"training_iteration": 1, "progress": 0.25, "val_miou": 0.9})
    decision = sched.on_trial_result(None, t_confirm, {"training_iteration": 1, "progress": 0.25, "val_miou": 0.1})
    assert decision == TrialScheduler.CONTINUE
    assert not stop_marker(str(tmp_path), confirm_run.key()).exists()


def test_asha_measures_each_run_in_its_own_schedule(tmp_path):
    """Issue 19 item 2: with sweep.budget=flops a run the budget gave 8 epochs (the plan: 4) reaches
    ASHA's max_t only at its own end: at its epoch 4 (progress 0.5) it is not stopped mid-schedule."""
    from ray.tune.schedulers import TrialScheduler

    from seglab.platform.sweep.search import make_scheduler
    from seglab.platform.train.hooks import stop_marker

    base, _ = _compose(["trainer.epochs=4"])
    sched = make_scheduler(SweepConfig.from_dict({"scheduler": "asha", "asha": {"grace_period": 1,
                                                                                 "reduction_factor": 2}}), 4)
    long_run, t_long = _asha_trial(base, tmp_path, 0.25, "long", epochs=8)
    sched.on_trial_add(None, t_long)
    for epoch in (1, 2, 3, 4):  # the best (only) trial at every rung it reaches
        decision = sched.on_trial_result(None, t_long, {"training_iteration": epoch, "progress": epoch / 8,
                                                        "val_miou": 0.5 + 0.01 * epoch})
        assert decision == TrialScheduler.CONTINUE
    assert not stop_marker(str(tmp_path), long_run.key()).exists()
    # a rung is a fraction of the planned schedule: grace 1 epoch of 4 = progress 0.25
    assert sched._time_attr == "progress" and sched._max_t == 1.0


def test_only_the_search_phase_gets_a_scheduler(tmp_path):
    from seglab.platform import methods
    from seglab.platform.sweep.phases import SweepState, tune_config
    from seglab.platform.sweep.search import BaselineProtectingASHA

    base, _ = _compose(["trainer.epochs=4", "sweep.kappa=[0.25,0.5]"])
    sweep = SweepConfig.from_dict({"scheduler": "asha", "kappa": [0.25, 0.5]})
    runs = plan_trials(base, sweep)
    state = SweepState(sweep, base, methods.for_sweep(base, runs), {"storage_path": str(tmp_path)}, tmp_path, 2)
    assert isinstance(tune_config(state, runs, search=True)[1].scheduler, BaselineProtectingASHA)
    assert tune_config(state, runs, search=False)[1].scheduler is None  # warm start, from-baseline, confirm


def test_one_selection_metric_chooses_everything():
    """Issue 19 item 14: sweep.metric / sweep.mode reach every run's checkpoint choice, ASHA and Optuna."""
    from seglab.platform.sweep.search import make_scheduler, make_searcher

    base, _ = _compose(["trainer.epochs=4", "sweep.kappa=[0.25]"])
    sweep = SweepConfig.from_dict({"metric": "val_trimap_error_w3", "mode": "min", "scheduler": "asha",
                                   "kappa": [0.25]})
    runs = plan_trials(base, sweep)
    assert {(r.trainer.selection_metric, r.trainer.selection_mode) for r in runs} == {("val_trimap_error_w3", "min")}
    sched = make_scheduler(sweep, 4)
    assert (sched._metric, sched._mode) == ("val_trimap_error_w3", "min")
    optuna = make_searcher(SweepConfig.from_dict({"search": "optuna", "metric": "val_f1", "mode": "max",
                                                  "kappa": {"uniform": [0.1, 1.0]}}), [], lambda p: p)
    assert (optuna.inner.metric, optuna.inner.mode) == ("val_f1", "max")
    with pytest.raises(ConfigError, match="sweep.mode must be one of max, min"):
        SweepConfig.from_dict({"mode": "up"})
    with pytest.raises(ConfigError, match=r"sweep.metric must be a per-epoch metric of the selection split"):
        SweepConfig.from_dict({"metric": "test_miou"})


def test_the_confirmation_reruns_the_group_with_the_best_selection_score(tmp_path, monkeypatch):
    """chosen_group reads each run's selection_score (the sweep's metric), the lowest for mode=min."""
    from seglab.platform import tracking
    from seglab.platform.sweep.phases import chosen_group

    uri = new_mlflow_store(tmp_path, "m.db")
    monkeypatch.setenv("SEGLAB_ARTIFACT_ROOT", (tmp_path / "art").as_uri())
    exp = tracking.ensure_experiment("sel", uri)
    parent = tracking.start_parent_run(exp, "p", {}, uri)
    c = tracking.client(uri)
    for group, seed, score, miou in (("A", 0, 0.30, 0.9), ("A", 1, 0.40, 0.9), ("B", 0, 0.10, 0.2), ("B", 1, 0.20, 0.2)):
        run = tracking.find_or_create_child(exp, parent, f"{group}{seed}", group, {},
                                            {"seglab.group": group, "seglab.baseline": "false"}, uri)
        c.log_metric(run, "selection_score", score)
        c.log_metric(run, "best_val_miou", miou)
        c.set_terminated(run, "FINISHED")
    assert chosen_group(parent, uri, "min") == ("B", 2)  # mean 0.15 < 0.35
    assert chosen_group(parent, uri, "max") == ("A", 2)


def _render(table):
    """A method's table as the report prints it."""
    return markdown_table(table.header, table.body, table.footnote)


def test_ablation_table_has_the_papers_columns_and_switches():
    from seglab.platform.report import stats

    def row(label, baseline=False, **kw):
        r = {"label": label, "baseline": baseline, "test_miou_est": None, "delta_est": None, "tau": None,
             "frozen": False, "branch": None, "cascade": None, "loss_name": "ovenet", "criterion": "ohem",
             "miou_initial": None, "miou_seed": None, "seeds": 1}
        r.update(kw)
        return r

    # S_f over seeds 0, 1: 0.47, 0.49 -> 48.00 ± t(.975, 1) x 0.01 = 12.71; paired Δ vs 0.46, 0.47: 0.01,
    # 0.02 -> +1.50 ± 12.706 x 0.005 = 6.35 (points); a single-seed row has no interval
    rows = [row("Br4 τ0.2 CE", tau=0.2, branch=4.0, cascade=0.0, criterion="ce", seeds=2,
                test_miou_est=stats.mean_ci([0.47, 0.49]), miou_initial=0.45, miou_seed=0.30,
                delta_est=stats.paired_difference({0: 0.47, 1: 0.49}, {0: 0.46, 1: 0.47})),
            row("HRNet", baseline=True, loss_name="ohem", criterion=None, test_miou_est=stats.mean_ci([0.48])),
            row("Fr Br4 τ0.5 OHEM", tau=0.5, branch=4.0, frozen=True, cascade=2.0,
                test_miou_est=stats.mean_ci([0.49]), delta_est=stats.paired_difference({0: 0.49}, {0: 0.48}))]
    lines = _render(format_ablation_table(rows)).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[:5]]
    assert cells[0] == ["variant", "Fr", "Br", "τ", "Ref", "OHEM", "mIoU", "S_i", "S_s", "Δ vs base", "seeds"]
    assert cells[2] == ["HRNet (baseline)", "", "", "", "", "✓", "48.00 (n=1)", "-", "-", "-", "1"]  # baseline first
    assert cells[3] == ["Br4 τ0.2 CE", "", "4", "0.2", "", "", "48.00 ± 12.71", "45.00", "30.00", "+1.50 ± 6.35", "2"]
    assert cells[4] == ["Fr Br4 τ0.5 OHEM", "✓", "4", "0.5", "2", "✓", "49.00 (n=1)", "-", "-", "+1.00 (n=1)", "1"]


def test_ablation_table_shows_no_interval_when_seeds_do_not_vary():
    from seglab.platform.report import stats

    row = {"label": "Br4", "baseline": False, "tau": 0.2, "frozen": False, "branch": 4.0, "cascade": None,
           "loss_name": "ovenet", "criterion": "ce", "miou_initial": None, "miou_seed": None, "seeds": 3,
           "test_miou_est": stats.mean_ci([0.5, 0.5, 0.5]),  # the same score for every seed
           "delta_est": stats.paired_difference({0: 0.5, 1: 0.5, 2: 0.5}, {0: 0.25, 1: 0.25, 2: 0.25})}
    cells = [c.strip() for c in _render(format_ablation_table([row])).splitlines()[2].strip("|").split("|")]
    assert cells[6] == "50.00 (no variation, n=3)" and cells[9] == "+25.00 (no variation, n=3)"


# ------------------------------------------------------------------ issue 14: seeds, budgets, splits
def test_seeds_are_paired_across_runs_and_labelled():
    from seglab.platform.sweep.plan import with_seeds

    base, sweep = _compose(["sweep.kappa=[0.25,0.5]", "trainer.seed=7"])
    runs = plan_trials(base, sweep)
    seeded = with_seeds(runs, 3)
    assert len(seeded) == 9
    by_group = {}
    for r in seeded:
        by_group.setdefault(r.group_key(), []).append(r.trainer.seed)
    assert len(by_group) == 3 and all(s == [7, 8, 9] for s in by_group.values())  # the same seeds for every run
    assert len({r.key() for r in seeded}) == 9  # distinct trials
    assert seeded[1].label == f"{runs[0].label} seed=8"
    assert with_seeds(runs, 1)[0].key() == runs[0].key()  # one seed: the run as planned (resume keeps its key)
    confirm = with_seeds(runs[:1], 2, first=3, phase="confirm")
    assert [r.trainer.seed for r in confirm] == [10, 11] and {r.phase for r in confirm} == {"confirm"}
    assert confirm[0].group_key() == runs[0].group_key()  # a confirmation pools with its configuration


def test_flops_budget_scales_epochs_by_the_gflops_ratio_and_time_sets_the_limit():
    from seglab.platform.sweep.plan import apply_budget

    base, sweep = _compose(["sweep.kappa=[0.25]", "trainer.epochs=20", "sweep.budget=flops"])
    runs = plan_trials(base, sweep)  # baseline, then OVeNet
    out = apply_budget(runs, _summaries(10.0, 13.5), sweep)
    assert [r.trainer.epochs for r in out] == [20, 15]  # round(20 * 10 / 13.5) = round(14.81)
    assert [r.trainer.epochs for r in runs] == [20, 20]  # the plan itself is not modified
    base, sweep = _compose(["sweep.kappa=[0.25]", "sweep.budget=time", "sweep.time_budget_s=90"])
    out = apply_budget(plan_trials(base, sweep), _summaries(10.0, 13.5), sweep)
    assert [r.trainer.time_limit_s for r in out] == [90.0, 90.0]
    base, sweep = _compose(["sweep.kappa=[0.25]"])
    assert apply_budget(plan_trials(base, sweep), _summaries(10.0, 13.5), sweep)[1].trainer.epochs == 10  # schedule


def _summaries(*train_gflops, inference=None):
    """RunSummary per run: ``train_gflops`` as given, inference GFLOPs ``inference`` (default: the same)."""
    from seglab.platform.sweep.validate import RunSummary

    return [RunSummary(9, [], 1, g if inference is None else inference, (64, 128), train_gflops=g)
            for g in train_gflops]


def test_flops_budget_uses_the_training_forward_not_the_inference_gflops():
    """Item 5 (issue 19): two runs with the same inference GFLOPs (10) whose training forwards cost 10
    and 25 (PHGMM's PostNet runs only in training): the second trains round(20 * 10 / 25) = 8 epochs."""
    from seglab.platform.sweep.plan import apply_budget

    base, sweep = _compose(["sweep.kappa=[0.25]", "trainer.epochs=20", "sweep.budget=flops"])
    out = apply_budget(plan_trials(base, sweep), _summaries(10.0, 25.0, inference=10.0), sweep)
    assert [r.trainer.epochs for r in out] == [20, 8]


def test_phgmm_sweep_budget_and_spent_compute_count_postnet():
    """The PHGMM plan validated as the sweep does it: each summary's training GFLOPs is the inference
    count plus PostNet's own (counted alone on its input); the flops budget gives PHGMM
    round(20 * baseline / PHGMM) epochs of those; ``training_gflops`` is 3 x training forward x images."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from seglab.models.complexity import count_flops
    from seglab.platform.build import build_model
    from seglab.platform.sweep.plan import apply_budget
    from seglab.platform.sweep import validate_sweep
    from seglab.platform.train.trainer import training_gflops

    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = OmegaConf.to_container(compose(config_name="phgmm", overrides=[
            "trainer=tiny", "trainer.epochs=20", "trainer.flops_input_size=[64,128]", "sweep.budget=flops",
            "dataset.image_size=[32,64]", "dataset.train.num_samples=2", "dataset.train.crop_size=[32,64]",
            "dataset.val.num_samples=2", "dataset.test.num_samples=2"]), resolve=True)
    sweep = SweepConfig.from_dict(cfg.pop("sweep"))
    runs = plan_trials(cfg, sweep)
    assert [r.baseline for r in runs] == [True, False] and runs[1].model.name == "phgmm_r18"
    summaries = validate_sweep(cfg, sweep, runs, verify_data=False)
    with torch.device("meta"):
        baseline, phgmm = (build_model(r.model, summaries[0].num_classes, load_weights=False) for r in runs)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        phgmm.postnet(torch.empty(1, 3, 64, 128, device="meta"), torch.zeros(1, 64, 128, dtype=torch.long, device="meta"))
    postnet = counter.get_total_flops() // 2 / 2**30
    assert summaries[0].train_gflops == summaries[0].gflops == count_flops(baseline, (64, 128))
    assert summaries[1].gflops == count_flops(phgmm, (64, 128))  # the inference column is unchanged
    assert summaries[1].train_gflops == pytest.approx(summaries[1].gflops + postnet, rel=1e-12)
    epochs = round(20 * summaries[0].train_gflops / summaries[1].train_gflops)
    assert epochs != round(20 * summaries[0].gflops / summaries[1].gflops)  # the two budgets differ here
    assert [r.trainer.epochs for r in apply_budget(runs, summaries, sweep)] == [20, max(1, epochs)]
    spent = training_gflops(runs[1], summaries[1].num_classes, (64, 128), images=7)
    assert spent == pytest.approx(3 * 7 * (summaries[1].gflops + postnet), rel=1e-12)
    # the driver also counted the training forward at the training crop (what a trial multiplies by its
    # images): a trial never counts again; the crop's count is the model's own at 32x64
    for r, summary, model in zip(runs, summaries, (baseline, phgmm)):
        assert summary.train_forward_gflops == {"64x128": summary.train_gflops,
                                                "32x64": count_flops(model, (32, 64), train=True)}
        assert summary.train_forward_gflops["32x64"] < summary.train_gflops / 3.5  # a quarter of the pixels


def test_a_trainer_given_the_drivers_count_spends_no_time_counting(monkeypatch):
    """``train_gflops_spent`` = 3 x the driver's training-forward count at the batches' size x images,
    without a FLOP count in the trial; a size the driver did not count is counted there."""
    from seglab.platform.train import trainer as T
    from tests.platform.train.test_trainer import make_run

    run = make_run(epochs=1, flops_input_size=[64, 128])

    def counted(*args):
        raise AssertionError("counted in the trial")

    monkeypatch.setattr(T, "training_gflops", counted)
    trainer = T.Trainer.from_run(run, say=lambda text: None, train_forward_gflops={"32x64": 0.25, "64x128": 1.0})
    assert trainer.fit()["train_gflops_spent"] == pytest.approx(3 * 0.25 * 8)  # 1 epoch x 8 images at 32x64
    monkeypatch.undo()
    other = T.Trainer.from_run(run, say=lambda text: None, train_forward_gflops={"64x128": 1.0})
    assert other.fit()["train_gflops_spent"] == pytest.approx(T.training_gflops(run, 9, (32, 64), 8), rel=1e-12)


@pytest.mark.parametrize("override, message", [
    ("sweep.seeds=0", "sweep.seeds must be an integer >= 1"),
    ("sweep.confirm_seeds=-1", "sweep.confirm_seeds must be an integer >= 0"),
    ("sweep.budget=gpu", "sweep.budget must be one of schedule, flops, time"),
    ("sweep.budget=time", "sweep.budget=time needs sweep.time_budget_s"),
    ("sweep.time_budget_s=-5", "sweep.time_budget_s must be null or a number of seconds > 0"),
    ("sweep.warm_start_epochs=-1", "sweep.warm_start_epochs must be an integer >= 0"),
])
def test_honest_sweep_keys_are_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        _compose([override])


def test_warm_start_run_and_starting_from_it():
    from seglab.platform.sweep.plan import start_from, warm_start_run

    base, sweep = _compose(["sweep.kappa=[0.25]", "sweep.warm_start_epochs=3"])
    warm = warm_start_run(base, sweep)
    assert warm.trainer.epochs == 3 and warm.phase == "warm_start" and warm.model.name == "hrnet_w18_small_v1"
    baseline, method = plan_trials(base, sweep)
    assert start_from(baseline, "/w/best.pt").model.pretrained == "/w/best.pt"
    assert start_from(method, "/w/best.pt").model.body_checkpoint == "/w/best.pt"  # OVeNet: body + main head


def test_selection_fraction_holds_out_train_files_by_name(tmp_path):
    from seglab.datasets.fixtures.cityscapes import write_cityscapes
    from seglab.platform.build import build_datasets, build_report_dataset, held_out, selection_is_report
    from seglab.platform.config import DatasetConfig

    write_cityscapes(tmp_path, {"train": 12, "val": 3})
    cfg = DatasetConfig.from_dict({"name": "cityscapes", "root": str(tmp_path), "selection_fraction": 0.4,
                                   "train": {"augment": True, "crop_size": [32, 64]}, "val": {"augment": False}})
    train, selection = build_datasets(cfg)
    report = build_report_dataset(cfg)
    names = lambda ds: {str(Path(s.image).relative_to(tmp_path)) for s in ds.samples}  # noqa: E731
    assert names(train).isdisjoint(names(selection)) and len(names(train) | names(selection)) == 12
    assert names(selection) == {n for n in names(train) | names(selection) if held_out(n, 0.4)}  # by file name
    assert not selection.augment and train.augment
    assert {Path(s.image).parts[-3] for s in report.samples} == {"val"} and len(report) == 3
    assert not selection_is_report(cfg)
    # deterministic: the same split again, whatever the listing order
    assert names(build_datasets(cfg)[1]) == names(selection)
    with pytest.raises(ConfigError, match="selection_fraction must be null or a number in"):
        DatasetConfig.from_dict({"name": "cityscapes", "selection_fraction": 1.5})


def test_a_trial_reuses_the_drivers_counts(monkeypatch):
    """Issue 20 item 4: the sweep's driver counts each architecture once (inference and training
    GFLOPs, parameters); a trial of that architecture logs those numbers without building a model or
    its data sets, and counts only an architecture the driver has not seen (an Optuna proposal)."""
    from seglab.platform.config import RunConfig
    from seglab.platform.sweep import trial, validate
    from seglab.platform.sweep.runner import summaries_for_trials

    def run_with(k):
        return RunConfig.from_dict({"model": {"name": "phgmm_r18", "num_components": k, "latent_dim": 8},
                                    "loss": {"name": "phgmm"}, "trainer": {"flops_input_size": [64, 64]},
                                    "dataset": {"name": "synthetic", "image_size": [32, 64]}})

    counted = validate.validate_run(run_with(2))
    other = validate.validate_run(run_with(3))
    ctx = {"summaries": summaries_for_trials([run_with(2)], [counted])}

    def no_count(*args, **kwargs):
        raise AssertionError("the trial counted again")

    monkeypatch.setattr(validate, "validate_run", no_count)
    reused = trial.trial_summary(run_with(2), ctx)
    assert (reused.params, reused.gflops, reused.train_gflops, reused.inference_params, reused.flops_input_size) \
        == (counted.params, counted.gflops, counted.train_gflops, counted.inference_params, (64, 64))
    monkeypatch.undo()
    assert trial.trial_summary(run_with(3), ctx).train_gflops == other.train_gflops > counted.train_gflops


def test_validate_sweep_counts_each_architecture_once(monkeypatch):
    """Runs of one sweep that share an architecture (here three OVeNet loss weights) are counted once:
    two architectures (the HRNet baseline, OVeNet) -> two inference and four training counts (at
    flops_input_size and at the training crop), not twelve;
    every run still gets its architecture's numbers. A bad run fails the sweep before anything is counted."""
    from seglab.models import complexity
    from seglab.platform.sweep import validate_sweep

    calls = []

    def fake_count(model, input_size=(1024, 2048), in_chans=3, train=False):
        calls.append((type(model).__name__, tuple(input_size), train))
        return 100.0 * len(calls)  # a new number per call: a reused count is visible

    monkeypatch.setattr(complexity, "count_flops", fake_count)
    base, sweep = _compose(["sweep.kappa=[0.25,0.5,1.0]", "trainer.flops_input_size=[64,128]"])
    runs = plan_trials(base, sweep)
    assert [r.model.name for r in runs] == ["hrnet_w18_small_v1"] + 3 * ["ovenet_hrnet_w18_small_v1"]
    summaries = validate_sweep(base, sweep, runs, verify_data=False)
    # per architecture: inference and training forward at flops_input_size, the training forward at the crop
    assert calls == [("HRNetV2", (64, 128), False), ("HRNetV2", (64, 128), True), ("HRNetV2", (128, 256), True),
                     ("OVeNet", (64, 128), False), ("OVeNet", (64, 128), True), ("OVeNet", (128, 256), True)]
    assert [(s.gflops, s.train_gflops) for s in summaries] == [(100.0, 200.0)] + 3 * [(400.0, 500.0)]
    assert [s.train_forward_gflops for s in summaries] == [{"64x128": 200.0, "128x256": 300.0}] + 3 * [
        {"64x128": 500.0, "128x256": 600.0}]
    # another flops_input_size is another count; the training crop's count is the train_gflops when they agree
    calls.clear()
    base, sweep = _compose(["sweep.kappa=[0.25]", "trainer.flops_input_size=[128,256]"])
    summaries = validate_sweep(base, sweep, plan_trials(base, sweep), verify_data=False)
    assert [c[1] for c in calls] == [(128, 256)] * 4
    assert [s.train_forward_gflops for s in summaries] == [{"128x256": 200.0}, {"128x256": 400.0}]
    # the second run (OVeNet) names a missing file: one error, and the valid baseline was not counted either
    calls.clear()
    base, sweep = _compose(["sweep.kappa=[0.25]", "+model.body_checkpoint=/nonexistent/best.pt"])
    runs = plan_trials(base, sweep)
    assert not runs[0].model.body_checkpoint and runs[1].model.body_checkpoint == "/nonexistent/best.pt"
    with pytest.raises(ConfigError, match="model.body_checkpoint: file not found: /nonexistent/best.pt"):
        validate_sweep(base, sweep, runs, verify_data=False)
    assert calls == []
