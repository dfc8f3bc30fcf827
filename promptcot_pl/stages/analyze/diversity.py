"""Where problem sets lie and how varied they are (SPEC §7), from sentence embeddings (`models/embeddings.py`).

- within a set: mean pairwise cosine distance of its problems, and distinct-n (unique word n-grams / all n-grams);
- between sets: 1 − cos of the sets' mean embeddings (the paper's measure), and a 2-D MDS picture of the sets
  from that distance matrix (scikit-learn's metric MDS on precomputed dissimilarities).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from promptcot_pl.data.filters import words


def mean_pairwise_distance(vectors: np.ndarray) -> float:
    """Mean of 1 − cos over all unordered pairs of (L2-normalised) rows; 0 for fewer than two rows."""
    n = len(vectors)
    if n < 2:
        return 0.0
    similarity = vectors @ vectors.T
    return float((n * n - similarity.sum()) / (n * (n - 1)))  # the diagonal contributes 1 − 1 = 0


def distinct_n(texts: Sequence[str], n: int) -> float:
    grams = [tuple(w[i:i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def set_distances(embeddings: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """(set names, [S, S] matrix of 1 − cos between the sets' mean embeddings)."""
    names = list(embeddings)
    means = np.stack([embeddings[k].mean(axis=0) for k in names])
    means /= np.linalg.norm(means, axis=1, keepdims=True).clip(min=1e-12)
    distances = np.clip(1.0 - means @ means.T, 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    return names, distances


def plot_mds(names: Sequence[str], distances: np.ndarray, path: str | Path, seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import MDS

    if len(names) > 2:
        points = MDS(n_components=2, dissimilarity="precomputed", random_state=seed, n_init=4).fit_transform(distances)
    else:  # MDS of one or two points is a line: place them directly
        points = np.array([[0.0, 0.0], [float(distances[0, 1]) if len(names) == 2 else 0.0, 0.0]])[: len(names)]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(points[:, 0], points[:, 1], s=60)
    for name, (x, y) in zip(names, points):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4))
    ax.set_title("problem sets: MDS of 1 − cos(mean embeddings)", fontsize=9)
    ax.margins(0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
