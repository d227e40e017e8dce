"""The demo's training recipe, measured without the platform (plain PyTorch + seglab's core).

    python benchmarks/demo_recipe.py [--model hrnet_w18_small_v1] [--loss ce] [--epochs 13]
        [--lr 0.05] [--warmup 100] [--scale 0.75 1.25] [--batch 8] [--train-samples 400]
        [--test-samples 500] [--val-samples 50] [--seed 0] [--init CKPT] [--save CKPT]
        [--eval-every 1] [--threads 2] [--eval-only]

Trains one model on the embedded ``synthetic`` data set (128x256) as ``make demo``'s trials do:
SGD (momentum 0.9, weight decay 5e-4), a linear warm-up of ``--warmup`` steps then poly decay
(power 0.9) to 0 over ``--epochs`` epochs, random scale ``--scale`` + crop + flip, batch ``--batch``,
``torch.set_num_threads(--threads)``, through seglab's own ``Trainer.train_epoch`` (the step, sampler,
augmentation seeds and schedule a platform trial uses). No Ray, no MLflow: the numbers are the recipe's,
not the platform's overhead.

Every ``--eval-every`` epochs (and after the last) it prints the mIoU on the held-out ``test`` split
(``--test-samples`` generated images, never used for any choice) and, with ``--val-samples`` > 0,
on the ``val`` (selection) split, with the seconds spent training and evaluating. ``--init CKPT``
starts from a saved state dict: the same model's (the baseline continued) or, for an ``ovenet_*``
model, a trained ``hrnet_*`` state loaded into its body and main head (``load_body_state``, not
frozen; the offset branch stays freshly initialised, or with ``--offset-from-body`` starts as a copy
of the loaded main path) -- the demo's warm-start. ``--save CKPT``
writes the final state dict. ``--eval-only`` evaluates ``--init`` on the splits and times it.

Timings: wall seconds, and the process's CPU seconds (all threads): on a machine shared with other
work the wall time grows, the CPU seconds much less; an idle 2-core machine runs about CPU/2 wall.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict, Optional

import torch
from torch.utils.data import DataLoader

from seglab.datasets.synthetic import SyntheticStreetDataset
from seglab.metrics.confusion import ConfusionMatrix
from seglab.models import build_model


CHUNK = 50  # images per block of the block-to-block spread (the size of the old val split)


@torch.no_grad()
def evaluate(model: torch.nn.Module, ds: SyntheticStreetDataset, batch: int = 10) -> Dict[str, object]:
    """mIoU (and, for OVeNet, the mIoU of its first head S_i) of ``model`` on ``ds``; seconds taken.

    Also the mIoU of every block of ``CHUNK`` consecutive images (``chunk_std``: their sample standard
    deviation), which shows how much of a score's spread is the choice of evaluation images: the
    spread of an n-image score is about ``chunk_std * sqrt(CHUNK / n)``."""
    t0, c0 = time.perf_counter(), time.process_time()
    model.eval()
    cm = ConfusionMatrix(ds.num_classes, ds.ignore_index)
    chunks = [ConfusionMatrix(ds.num_classes, ds.ignore_index) for _ in range(len(ds) // CHUNK)]
    cm_initial: Optional[ConfusionMatrix] = None
    seen = 0
    for images, labels in DataLoader(ds, batch_size=batch, shuffle=False, num_workers=0):
        out = model(images)
        cm.update(out.logits, labels)
        for j in range(images.shape[0]):  # per image: blocks need not align with batches
            if (seen + j) // CHUNK < len(chunks):
                chunks[(seen + j) // CHUNK].update(out.logits[j:j + 1], labels[j:j + 1])
        seen += images.shape[0]
        if getattr(out, "initial_logits", None) is not None:
            cm_initial = cm_initial or ConfusionMatrix(ds.num_classes, ds.ignore_index)
            cm_initial.update(out.initial_logits, labels)
    scores = cm.compute()
    result: Dict[str, object] = {"miou": scores["miou"], "per_class_iou": scores["per_class_iou"],
                                 "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
    if len(chunks) >= 2:
        result["chunk_std"] = statistics.stdev(c.compute()["miou"] for c in chunks)
    if len(chunks) > 4:  # the first 200 images are exactly a 200-image test split of the same seed
        first = ConfusionMatrix(ds.num_classes, ds.ignore_index)
        first.matrix = sum(c.matrix for c in chunks[:4])
        result["miou_first200"] = first.compute()["miou"]
    if cm_initial is not None:
        result["miou_initial"] = cm_initial.compute()["miou"]
    model.train()
    return result


def recipe_trainer(a: argparse.Namespace, loss_kwargs: Dict[str, object], model: torch.nn.Module):
    """seglab's Trainer for the recipe (the platform's training step; no Ray, no MLflow, no hooks):
    the demo's trainer and data options, ``model`` (maybe warm-started) as its model."""
    from seglab.platform.build import build_loss as build_run_loss
    from seglab.platform.config import RunConfig
    from seglab.platform.train.data import build_run_data
    from seglab.platform.train.trainer import Trainer

    run = RunConfig.from_dict({
        "model": {"name": a.model}, "loss": {"name": a.loss, **loss_kwargs},
        "dataset": {"name": "synthetic", "seed": a.data_seed,
                    "train": {"num_samples": a.train_samples, "scale_range": list(a.scale), "crop_size": [128, 256]},
                    "val": {"num_samples": max(a.val_samples, 1), "augment": False}},
        "trainer": {"num_workers": 1, "epochs": a.epochs, "batch_size": a.batch, "lr": a.lr, "momentum": 0.9,
                    "weight_decay": 5e-4, "poly_power": 0.9, "warmup_steps": a.warmup, "seed": a.seed,
                    "viz_samples": 0}})
    data = build_run_data(run)
    criterion = build_run_loss(run.loss, data.eval_context.ignore_index, data.num_classes)
    return Trainer(run, data, model, criterion, say=lambda text: None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hrnet_w18_small_v1")
    p.add_argument("--loss", default="ce", help="ce | ohem | ovenet (with its defaults)")
    p.add_argument("--loss-criterion", default=None,
                   help="ovenet only: criterion of every term, e.g. ohem:0.9:0.125 (name:thresh:min_kept)")
    p.add_argument("--epochs", type=int, default=13)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--scale", type=float, nargs=2, default=(0.75, 1.25))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--train-samples", type=int, default=400)
    p.add_argument("--test-samples", type=int, default=500)
    p.add_argument("--val-samples", type=int, default=0)
    p.add_argument("--data-seed", type=int, default=0, help="dataset.seed (which images)")
    p.add_argument("--seed", type=int, default=0, help="model init, data order and augmentation")
    p.add_argument("--init", default=None)
    p.add_argument("--save", default=None)
    p.add_argument("--offset-from-body", action="store_true",
                   help="with --init on an ovenet_* model: copy the loaded main path into the offset branch")
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-only", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    train_ds = SyntheticStreetDataset("train", num_samples=a.train_samples, seed=a.data_seed,
                                      scale_range=tuple(a.scale), crop_size=(128, 256))
    test_ds = SyntheticStreetDataset("test", num_samples=a.test_samples, seed=a.data_seed)
    val_ds = SyntheticStreetDataset("val", num_samples=a.val_samples, seed=a.data_seed) if a.val_samples else None
    model = build_model(a.model, num_classes=train_ds.num_classes)
    if a.init:
        state = torch.load(a.init, map_location="cpu", weights_only=True)
        if hasattr(model, "load_body_state") and not any(k.startswith("offset") for k in state):
            print(f"warm start: {model.load_body_state(state)} body/main-head tensors from {a.init}")
            if a.offset_from_body:
                model.init_offset_branch_from_main()
                print("offset branch initialised from the warm-started main path (as the official code "
                      "initialises it from the same pretrained weights as the body)")
        else:
            model.load_state_dict(state)
            print(f"continuing {a.init}")
    params = sum(t.numel() for t in model.parameters()) / 1e6
    print(f"{a.model} ({params:.2f} M params), loss {a.loss}, lr {a.lr}, warm-up {a.warmup} steps, "
          f"scale {a.scale[0]}-{a.scale[1]}, batch {a.batch}, {a.train_samples} train / {a.test_samples} test / "
          f"{a.val_samples} val images, seed {a.seed}, {torch.get_num_threads()} threads", flush=True)

    def report(tag: str) -> Dict[str, object]:
        res = evaluate(model, test_ds)
        line = f"{tag}: test mIoU {res['miou']:.4f}"
        if "miou_initial" in res:
            line += f" (S_i {res['miou_initial']:.4f})"
        line += f" [{res['seconds']:.1f} s ({res['cpu_seconds']:.1f} CPU s) for {len(test_ds)} images"
        if "chunk_std" in res:
            line += f"; sd over {CHUNK}-image blocks {res['chunk_std']:.4f}"
        line += "]"
        if "miou_first200" in res:
            line += f"; first 200 test images {res['miou_first200']:.4f}"
        if val_ds is not None:
            v = evaluate(model, val_ds)
            line += f"; val mIoU {v['miou']:.4f} [{v['seconds']:.1f} s]"
        print(line, flush=True)
        return res

    if a.eval_only:
        res = report("eval")
        names = train_ds.class_names
        print("per-class test IoU: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(names, res["per_class_iou"])))
        return

    loss_kwargs = {}
    if a.loss_criterion:
        name, *rest = a.loss_criterion.split(":")
        spec: Dict[str, object] = {"name": name}
        if rest:
            spec["thresh"] = float(rest[0])
        if len(rest) > 1:
            spec["min_kept"] = float(rest[1]) if "." in rest[1] else int(rest[1])
        loss_kwargs["criterion"] = spec
    trainer = recipe_trainer(a, loss_kwargs, model)
    model = trainer.model
    t_train, cpu_train, t_eval, res = 0.0, 0.0, 0.0, None
    for epoch in range(1, a.epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        terms = trainer.train_epoch(epoch)  # the platform's step: seeded sampler, poly lr after warm-up, SGD
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        t_train += dt
        cpu_train += dc
        print(f"epoch {epoch:2d}/{a.epochs}: train loss {terms['train_loss']:.4f}, {dt:.1f} s ({dc:.1f} CPU s)",
              flush=True)
        if epoch % a.eval_every == 0 or epoch == a.epochs:
            res = report(f"epoch {epoch:2d}")
            t_eval += float(res["seconds"])
    assert res is not None
    print(f"done: {a.epochs} epochs, training {t_train:.0f} s ({cpu_train:.0f} CPU s), "
          f"test evaluations {t_eval:.0f} s; final test mIoU {res['miou']:.4f}")
    names = train_ds.class_names
    print("per-class test IoU: " + ", ".join(f"{nm} {v:.3f}" for nm, v in zip(names, res["per_class_iou"])))
    if a.save:
        torch.save(model.state_dict(), a.save)
        print(f"saved {a.save}")


if __name__ == "__main__":
    main()
