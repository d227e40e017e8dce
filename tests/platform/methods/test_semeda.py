"""SEMEDA's platform pieces without Ray: the edge-net cache key, run preparation, mask batches, the picture."""
import numpy as np
import pytest
import torch

from seglab.errors import ConfigError
from seglab.metrics import semantic_edges
from seglab.platform.config import RunConfig
from seglab.platform.evaluation import EvalContext
from seglab.platform.methods import semeda
from seglab.platform.viz.panels import TITLE_HEIGHT, panel_tile


def _run(edge_net="auto", **dataset):
    return RunConfig.from_dict({"model": {"name": "unet"}, "loss": {"name": "semeda", "edge_net": edge_net},
                                "dataset": {"name": "synthetic", "image_size": [32, 64], **dataset}})


def test_the_cache_key_follows_the_data_set_and_the_recipe_only():
    key = semeda.edge_net_key(_run())
    assert key.startswith("synthetic-") and key == semeda.edge_net_key(_run())
    assert semeda.edge_net_key(_run(edge_net={"steps": 10})) != key  # another recipe, another net
    assert semeda.edge_net_key(_run(seed=1)) != key  # other masks
    other_loss = _run()
    other_loss.loss.kwargs["lambda1"] = 0.5  # the λs do not change g
    assert semeda.edge_net_key(other_loss) == key


def test_prepare_run_fills_in_the_stages_edge_net_and_leaves_the_rest():
    run = _run(edge_net={"steps": 10})
    path = "/shared/cache/edge_net.pt"
    prepared = semeda.SEMEDA().prepare_run(run, {semeda.RESOURCE: {semeda.edge_net_key(run): path}})
    assert prepared.loss.kwargs["edge_net"] == path and prepared.key() != run.key()
    given = _run(edge_net="/my/edge_net.pt")
    assert semeda.SEMEDA().prepare_run(given, {}) is given
    with pytest.raises(ConfigError, match="produced no edge net"):
        semeda.SEMEDA().prepare_run(run, {semeda.RESOURCE: {}})


def test_recipe_options_are_checked():
    assert semeda.edge_net_recipe(_run())["steps"] == semeda.EDGE_NET_RECIPE["steps"]
    with pytest.raises(ConfigError, match=r"loss.edge_net.stepz is not a pre-training option"):
        semeda.edge_net_recipe(_run(edge_net={"stepz": 3}))
    with pytest.raises(ConfigError, match=r"loss.edge_net.lr must be > 0"):
        semeda.edge_net_recipe(_run(edge_net={"lr": 0}))


def test_mask_batches_are_random_crops_of_the_labels_padded_with_void():
    class Masks:
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return None, torch.full((3, 5), i, dtype=torch.long)

    batches = semeda._mask_batches(Masks(), {"batch_size": 4, "crop": 4}, 255, seed=0)
    batch = next(batches)
    assert batch.shape == (4, 4, 4)
    for crop in batch:  # a 3x5 mask in a 4x4 crop: 3 labelled rows, the 4th row void
        assert (crop[3] == 255).all() and set(crop[:3].unique().tolist()) <= {0, 1} and len(crop[:3].unique()) == 1


def test_the_picture_shows_edges_entropy_and_band_errors():
    label = torch.zeros(8, 16, dtype=torch.long)
    label[:, 8:] = 1
    probs = torch.zeros(2, 8, 16)
    probs[0, :, :7], probs[1, :, 7:] = 1.0, 1.0  # one wrong column (7) next to the boundary
    ctx = EvalContext(2, 255, ["a", "b"], [(10, 20, 30), (200, 100, 50)], torch.device("cpu"))
    panel = semeda.semeda_panel(torch.zeros(3, 8, 16), label, probs, ctx.palette, ctx, band_width=1)
    assert panel.shape == (2 * (TITLE_HEIGHT + 8) + 18, 4 * 16, 3)
    edges = panel[panel_tile(0, 3, (8, 16))]
    np.testing.assert_array_equal(edges[..., 0] == 255, semantic_edges(label).numpy())
    errors = panel[panel_tile(1, 3, (8, 16))]
    assert (errors[:, 7] == semeda.BAND_WRONG).all() and (errors[:, 8] == semeda.BAND_RIGHT).all()
    assert (errors[:, 0] == 0).all()  # right, outside the band
    entropy = panel[panel_tile(1, 2, (8, 16))]
    assert len(np.unique(entropy.reshape(-1, 3), axis=0)) == 1  # one-hot probabilities: zero entropy everywhere
    assert (panel[panel_tile(1, 0, (8, 16))] == 128).all()  # no edge net: a grey "n/a" tile
