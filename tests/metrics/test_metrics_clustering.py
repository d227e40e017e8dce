"""clustering_indices: a hand-computed toy configuration, separated vs overlapping clusters, degenerate input."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from seglab.metrics import clustering_indices

# Two clusters on a line: A = {0, 2}, B = {10, 12} (second coordinate 0).
TOY = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
TOY_LABELS = np.array([0, 0, 1, 1])


def test_toy_configuration_by_hand():
    r = clustering_indices(TOY, TOY_LABELS)
    # silhouette: a = 2 for every point; b = 11, 9, 9, 11 -> s = 9/11, 7/9, 7/9, 9/11; mean 79/99
    # CHI: centroids 1, 11, grand mean 6: SS_B = 2*25 + 2*25 = 100, SS_W = 4 -> (100/4) * (4-2)/(2-1) = 50
    # DBI: mean distance to centroid s = 1 in both clusters, centroid distance 10 -> (1+1)/10 = 0.2
    assert r == pytest.approx({"silhouette": 79 / 99, "calinski_harabasz": 50.0, "davies_bouldin": 0.2}, rel=1e-12)
    assert all(type(v) is float for v in r.values())


def _blobs(separation, seed=0, k=3, per=40, dim=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(k), per)
    return centres[labels] + rng.normal(size=(k * per, dim)), labels


def test_matches_sklearn_and_torch_input():
    x, y = _blobs(3.0)
    r = clustering_indices(torch.from_numpy(x).float(), torch.from_numpy(y))
    x32 = x.astype(np.float32).astype(np.float64)
    assert r["silhouette"] == pytest.approx(silhouette_score(x32, y), rel=1e-9)
    assert r["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(x32, y), rel=1e-9)
    assert r["davies_bouldin"] == pytest.approx(davies_bouldin_score(x32, y), rel=1e-9)


def test_separated_clusters_score_better_than_overlapping():
    good = clustering_indices(*_blobs(20.0))
    bad = clustering_indices(*_blobs(0.5))
    assert good["silhouette"] > 0.7 > 0.2 > bad["silhouette"]
    assert good["calinski_harabasz"] > 10 * bad["calinski_harabasz"]
    assert good["davies_bouldin"] < 0.5 < 2 < bad["davies_bouldin"]


@pytest.mark.parametrize("points, labels", [
    (TOY, np.zeros(4)),  # one label
    (TOY, np.arange(4)),  # N == number of labels
    (TOY[:3], np.array([0, 1, 2])),
    (np.zeros((0, 5)), np.zeros(0)),  # empty
    (np.zeros((4, 0)), TOY_LABELS),  # no features
    (np.where(np.eye(4, 2) > 0, np.nan, TOY), TOY_LABELS),  # a NaN coordinate
])
def test_degenerate_input_gives_nan(points, labels):
    r = clustering_indices(points, labels)
    assert set(r) == {"silhouette", "calinski_harabasz", "davies_bouldin"}
    assert all(math.isnan(v) for v in r.values())


def test_identical_points_do_not_raise():
    r = clustering_indices(np.ones((6, 3)), np.array([0, 0, 0, 1, 1, 1]))
    assert set(r) == {"silhouette", "calinski_harabasz", "davies_bouldin"}


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="labels"):
        clustering_indices(TOY, TOY_LABELS[:3])
    with pytest.raises(ValueError, match="points"):
        clustering_indices(TOY[:, 0], TOY_LABELS)
