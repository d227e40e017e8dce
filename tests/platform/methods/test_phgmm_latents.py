"""PHGMM's LatentEvaluator (issue 19): the run's KL estimator (item 6), the posterior-collapse probe at
batch size 1 (item 7) and clustering indices that do not depend on the number of workers (item 13).
Every expected value is recomputed independently (the loss itself, gmm_kl on hand-picked pairs,
scikit-learn on hand-picked images)."""
import math

import pytest
import torch

from seglab.losses import PHGMMLoss, gmm_kl
from seglab.models.outputs import SegOutput
from seglab.platform.config import RunConfig
from seglab.platform.evaluation import EvalBatch, EvalContext
from seglab.platform.methods.phgmm import PHGMM as PHGMMMethod
from seglab.platform.methods.phgmm import LatentEvaluator

C, K, D = 3, 2, 4


def _ctx(criterion=None, run=None):
    return EvalContext(num_classes=C, ignore_index=255, class_names=["a", "b", "c"], palette=[(0, 0, 0)] * C,
                       device=torch.device("cpu"), run=run, criterion=criterion)


def _mixture(n, seed):
    """``n`` images' q(z|x): pi (n, K), mu (n, K, D) with component k near 5k, logvar (n, K, D)."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, K, D, generator=g) + 5.0 * torch.arange(K, dtype=torch.float32)[None, :, None]
    logvar = 0.3 * torch.randn(n, K, D, generator=g)
    pi = torch.softmax(torch.randn(n, K, generator=g), dim=1)
    return pi, mu, logvar


class Posterior:
    """A PostNet stand-in whose mixture depends on the image and on the labels it is given."""

    def posterior(self, images, targets):
        pi = torch.softmax(images.mean(dim=(2, 3))[:, :K], dim=1)
        mu = images.mean(dim=(1, 2, 3))[:, None, None] + targets.float().mean(dim=(1, 2))[:, None, None] + \
            torch.arange(K * D, dtype=torch.float32).view(1, K, D) / 10
        logvar = 0.1 * targets.float().std(dim=(1, 2))[:, None, None].expand(-1, K, D)
        return pi, mu, logvar


def _batch(images, labels, indices, q, model=None):
    pi, mu, logvar = q
    out = SegOutput(logits=torch.zeros(images.shape[0], C, *labels.shape[-2:]),
                    latents={"pi": pi, "mu": mu, "logvar": logvar})
    return EvalBatch(images, labels, list(indices), out, model)


def _data(n, h=3, w=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, h, w, generator=g), torch.randint(0, C, (n, h, w), generator=g)


# ------------------------------------------------------------------------------------------ item 6
def test_val_kl_z_uses_the_runs_monte_carlo_estimator():
    """With loss.kl_z=mc the evaluator's l_z is the loss's own kl_z term on the same batch (the loss
    draws from the global generator, seeded as the evaluator seeds its own: trainer.seed), not the
    bound; the shuffled probe uses the same estimator and the same draws."""
    images, labels = _data(3)
    q = _mixture(3, seed=2)
    run = RunConfig.from_dict({"model": {"name": "phgmm_r18"}, "loss": {"name": "phgmm", "kl_z": "mc", "kl_samples": 3},
                               "dataset": {"name": "synthetic", "image_size": [32, 64]}, "trainer": {"seed": 7}})
    loss = PHGMMLoss(kl_z="mc", kl_samples=3).train()

    def loss_kl_z(targets_for_postnet):
        post = Posterior().posterior(images, targets_for_postnet)
        latents = dict(zip(("pi", "mu", "logvar", "post_pi", "post_mu", "post_logvar"), (*q, *post)))
        output = SegOutput(logits=torch.zeros(3, C, 3, 5), latents=latents)
        torch.manual_seed(7)
        return float(loss(output, labels).terms["kl_z"])

    expected, expected_shuffled = loss_kl_z(labels), loss_kl_z(labels.roll(1, dims=0))
    bound = float(gmm_kl(*q, *Posterior().posterior(images, labels), estimator="bound").mean())
    for ctx in (_ctx(criterion=loss, run=run), _ctx(run=run)):  # the run's loss, or its config alone
        ev = LatentEvaluator(ctx)
        ev.process(_batch(images, labels, [0, 1, 2], q, Posterior()))
        ev.all_reduce()
        m = ev.metrics()
        assert m["val_kl_z"] == pytest.approx(expected, rel=1e-6)
        assert m["val_kl_z_shuffled"] == pytest.approx(expected_shuffled, rel=1e-6)
        assert abs(m["val_kl_z"] - bound) > 0.05 * abs(bound)
    assert "estimator" in PHGMMMethod.notes and "loss.kl_z" in PHGMMMethod.notes


def test_val_kl_z_keeps_the_bound_for_bound_runs():
    images, labels = _data(2)
    q = _mixture(2, seed=3)
    ev = LatentEvaluator(_ctx(criterion=PHGMMLoss()))  # default kl_z=bound
    ev.process(_batch(images, labels, [0, 1], q, Posterior()))
    ev.all_reduce()
    expected = gmm_kl(*q, *Posterior().posterior(images, labels), estimator="bound").mean()
    assert ev.metrics()["val_kl_z"] == pytest.approx(float(expected), rel=1e-6)


# ------------------------------------------------------------------------------------------ item 7
def test_shuffle_probe_at_batch_size_1_pairs_an_image_with_another_images_labels():
    """Two validation images, one per batch: image 2 is given image 1's labels; image 1 has no image
    before it and is counted as not probed. Never the same image's labels."""
    images, labels = _data(2)
    q = _mixture(2, seed=4)
    ev = LatentEvaluator(_ctx(criterion=PHGMMLoss()))
    for i in range(2):
        ev.process(_batch(images[i:i + 1], labels[i:i + 1], [i], tuple(t[i:i + 1] for t in q), Posterior()))
    ev.all_reduce()
    m = ev.metrics()
    second = tuple(t[1:2] for t in q)
    expected = gmm_kl(*second, *Posterior().posterior(images[1:2], labels[0:1])).item()
    assert m["val_kl_z_shuffled"] == pytest.approx(expected, rel=1e-6)
    assert m["val_kl_z_shuffled_skipped"] == 1.0
    own = [gmm_kl(*(t[i:i + 1] for t in q), *Posterior().posterior(images[i:i + 1], labels[i:i + 1])).item()
           for i in range(2)]
    assert m["val_kl_z"] == pytest.approx(sum(own) / 2, rel=1e-6)


def test_shuffle_probe_reports_not_run_without_another_image_of_the_same_size():
    images, labels = _data(1)
    ev = LatentEvaluator(_ctx(criterion=PHGMMLoss()))
    ev.process(_batch(images, labels, [0], _mixture(1, seed=5), Posterior()))
    ev.all_reduce()
    m = ev.metrics()
    assert "val_kl_z_shuffled" not in m and m["val_kl_z_shuffled_skipped"] == 1.0 and math.isfinite(m["val_kl_z"])
    ev = LatentEvaluator(_ctx(criterion=PHGMMLoss()))  # two images of different sizes: labels cannot be swapped
    for i, (h, w) in enumerate([(3, 5), (4, 5)]):
        imgs, lbls = _data(1, h, w, seed=10 + i)
        ev.process(_batch(imgs, lbls, [i], _mixture(1, seed=6 + i), Posterior()))
    ev.all_reduce()
    m = ev.metrics()
    assert "val_kl_z_shuffled" not in m and m["val_kl_z_shuffled_skipped"] == 2.0


# ----------------------------------------------------------------------------------------- item 13
class FakeWorld:
    """``torch.distributed`` for ``world`` ranks run one after the other in this process: a first pass
    records what each rank contributes to each collective, a second (identical) pass returns the
    gathered / summed values, as the real collectives would."""

    def __init__(self, monkeypatch, world):
        import torch.distributed as dist

        self.world, self.rank, self.recorded, self.replay, self.calls = world, 0, {}, False, 0
        for name, fn in {"is_available": lambda: True, "is_initialized": lambda: True,
                         "get_world_size": lambda group=None: self.world, "get_rank": lambda group=None: self.rank,
                         "get_backend": lambda group=None: "gloo", "all_gather_object": self.all_gather_object,
                         "all_reduce": self.all_reduce}.items():
            monkeypatch.setattr(dist, name, fn)

    def _collective(self, value):
        key = (self.rank, self.calls)
        self.calls += 1
        self.recorded.setdefault(key, value)
        return [self.recorded[(r, key[1])] for r in range(self.world)] if self.replay else None

    def all_gather_object(self, parts, obj):
        got = self._collective(obj)
        parts[:] = got if got is not None else [obj] * self.world

    def all_reduce(self, tensor, op=None):
        got = self._collective(tensor.clone())
        if got is not None:
            tensor.copy_(sum(got))

    def run(self, shards, evaluate_rank):
        """``evaluate_rank(shard) -> metrics`` on every rank, twice; the second pass's metrics per rank."""
        out = []
        for self.replay in (False, True):
            out = []
            for self.rank, shard in enumerate(shards):
                self.calls = 0
                out.append(evaluate_rank(shard))
        return out


def _validate_shard(indices, q, max_points):
    """One rank's validation over the images ``indices`` (batches of 2): its LatentEvaluator's metrics."""
    ev = LatentEvaluator(_ctx(), max_points=max_points)
    for start in range(0, len(indices), 2):
        rows = torch.tensor(indices[start:start + 2])
        ev.process(_batch(torch.zeros(len(rows), 3, 1, 1), torch.zeros(len(rows), 1, 1, dtype=torch.long),
                          rows.tolist(), tuple(t[rows] for t in q)))
    ev.all_reduce()
    return ev.metrics()


def test_clustering_indices_do_not_depend_on_the_number_of_workers(monkeypatch):
    """Six images, K = 2, at most 6 points: images 0, 2, 5 of the data set (linspace over the data-set
    order, rounded) are clustered whether 1 or 2 workers saw them, and whichever rank held which."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    q = _mixture(6, seed=8)
    single = _validate_shard([0, 1, 2, 3, 4, 5], q, max_points=6)
    keys = ("val_ssi", "val_chi", "val_dbi")
    points = q[1][[0, 2, 5]].reshape(-1, D).double().numpy()
    labels = [0, 1] * 3
    expected = (silhouette_score(points, labels), calinski_harabasz_score(points, labels),
                davies_bouldin_score(points, labels))
    assert [single[k] for k in keys] == pytest.approx(expected, rel=1e-6)
    for shards in ([[0, 2, 4], [1, 3, 5]], [[1, 3, 5], [0, 2, 4]]):  # validation_shard's split, both ways round
        per_rank = FakeWorld(monkeypatch, 2).run(shards, lambda shard: _validate_shard(shard, q, max_points=6))
        for m in per_rank:
            assert [m[k] for k in keys] == pytest.approx(expected, rel=1e-6)
