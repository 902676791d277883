"""Splitting a training set among K clients: iid, or label-skewed by Dirichlet(α).

    shards = partition(labels, clients=K, scheme="iid", rng=rng)              # K index arrays
    shards = partition(labels, clients=K, scheme="dirichlet", alpha=0.5, rng=rng)

iid: a random permutation cut into K near-equal shards.
dirichlet (Hsu, Qi & Brown 2019): for each class c, proportions p_c ~ Dir(α·1_K) and the class's examples,
shuffled, are cut at the cumulative proportions; small α gives each client few classes, α → ∞ gives iid.
A shard may be empty; such a client returns a zero update. Host-side NumPy (indices only).
"""
from __future__ import annotations

import numpy as np

from minidp.errors import ConfigError

PARTITIONS = ("iid", "dirichlet")


def partition(labels, *, clients: int, scheme: str = "iid", alpha: float = 0.5,
              rng: np.random.Generator) -> list[np.ndarray]:
    """K sorted index arrays that together hold every index of ``labels`` (N,) exactly once."""
    labels = np.asarray(labels)
    if not (isinstance(clients, (int, np.integer)) and clients >= 1):
        raise ConfigError(f"clients={clients!r} must be a whole number >= 1")
    if scheme == "iid":
        order = rng.permutation(len(labels))
        return [np.sort(part) for part in np.array_split(order, clients)]
    if scheme != "dirichlet":
        raise ConfigError(f"partition={scheme!r} is not one of {PARTITIONS}")
    if not (np.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"dirichlet alpha={alpha!r} must be a finite number > 0")
    shards: list[list] = [[] for _ in range(clients)]
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        proportions = rng.dirichlet(np.full(clients, float(alpha)))  # (K,)
        cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(np.int64)  # (K-1,)
        for k, part in enumerate(np.split(members, cuts)):
            shards[k].extend(part.tolist())
    return [np.sort(np.asarray(s, dtype=np.int64)) for s in shards]
