"""Internal clustering indices of a labelled point cloud (PHGMM Fig. 9; spec B4), computed with
scikit-learn's maintained implementations."""
from __future__ import annotations

import math
from typing import Dict, Union

import numpy as np
from torch import Tensor

__all__ = ["clustering_indices"]

ArrayLike = Union[Tensor, np.ndarray]


def clustering_indices(points: ArrayLike, labels: ArrayLike) -> Dict[str, float]:
    """Silhouette (SSI), Calinski-Harabasz (CHI) and Davies-Bouldin (DBI) indices of ``points``
    grouped by ``labels`` (scikit-learn's ``silhouette_score`` with the Euclidean metric,
    ``calinski_harabasz_score``, ``davies_bouldin_score``).

    PHGMM's use (spec B4 [proposal]): the points are the component means ``mu_z^k(x_i)`` in
    R^256 for every val image ``i`` and component ``k``, labelled by ``k``; the indices are computed
    in that 256-d space (not on a t-SNE embedding). SSI (in [-1, 1]) and CHI are higher-is-better,
    DBI is lower-is-better; PHGMM expects SSI and CHI to rise and DBI to fall over training.

    Degenerate data never raises: all three are NaN when there are fewer than 2 distinct labels,
    no more points than labels (scikit-learn needs ``2 <= labels <= N - 1``), no feature
    dimension, or a non-finite coordinate.

    Args:
        points: ``(N, D)`` float array or tensor.
        labels: ``(N,)`` cluster labels (any hashable dtype numpy can sort).

    Raises:
        ValueError: ``points`` is not 2-D, ``labels`` is not 1-D, or their lengths differ.
    """
    x = _numpy(points).astype(np.float64, copy=False)
    y = _numpy(labels)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"expected points (N, D) and labels (N,); got {x.shape} and {y.shape}")
    n_labels = np.unique(y).size
    if n_labels < 2 or x.shape[0] <= n_labels or x.shape[1] == 0 or not np.isfinite(x).all():
        return {"silhouette": math.nan, "calinski_harabasz": math.nan, "davies_bouldin": math.nan}
    # imported here: scikit-learn is slow to import and only this function needs it
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    return {
        "silhouette": float(silhouette_score(x, y)),
        "calinski_harabasz": float(calinski_harabasz_score(x, y)),
        "davies_bouldin": float(davies_bouldin_score(x, y)),
    }


def _numpy(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)
