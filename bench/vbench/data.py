"""The benchmark's data: deterministic generated embeddings and exact ground truth."""
from __future__ import annotations

import os

import faiss
import numpy as np

from .config import K
from .peers import threads


def embeddings(n: int, d: int, seed: int) -> np.ndarray:
    """n float32 vectors of dimension d, deterministic for (n, d, seed).

    Not trivially clustered: a mixture of 512 Gaussian clusters in a latent space of d/2
    dimensions whose spread (1.25) exceeds the spread of the cluster centres (1.0), so clusters
    overlap; mapped linearly to d dimensions, plus isotropic noise (0.15). The structure
    (centres, projection) depends on d only, so base vectors and queries drawn with different
    seeds come from the same distribution. Tuned so that ANN is neither trivial nor hopeless:
    on 100,000 such vectors HNSW32 needs efSearch around 128 and IVF1024 nprobe around 128 for
    recall@10 near 0.96-0.99 (see the report for the measured curves).
    """
    latent = max(2, d // 2)
    structure = np.random.default_rng(1_000_003 + d)
    centres = structure.normal(size=(512, latent))
    proj = structure.normal(size=(latent, d)) / np.sqrt(latent)
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 100_000):  # in chunks: bounded float64 temporaries
        m = min(100_000, n - s)
        z = centres[rng.integers(0, 512, size=m)] + 1.25 * rng.normal(size=(m, latent))
        out[s:s + m] = z @ proj + 0.15 * rng.normal(size=(m, d))
    return out


def ground_truth(base: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Exact k nearest neighbours (squared L2) as SQLite rowids (= position + 1)."""
    with threads(os.cpu_count() or 1):
        idx = faiss.IndexFlatL2(base.shape[1])
        idx.add(base)
        _, ids = idx.search(queries, k)
    return ids + 1
