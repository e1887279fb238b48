"""Realistic generated interactions: string ids, power-law popularity, planted taste.

Items belong to taste clusters; each user likes one to three clusters. An interaction picks one
of the user's clusters (or, with probability `noise`, any item by global popularity), then an item
in that cluster by power-law popularity. User activity is power-law too. A model that learns the
clusters beats popularity; repeated (user, item) draws become implicit counts once prepared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TS_START = 1_700_000_000  # 2023-11-14
TS_SPAN = 180 * 86400


@dataclass
class _World:
    user_activity: np.ndarray  # cumulative distribution over users
    user_clusters: np.ndarray  # (n_users, 3) liked clusters
    cluster_items: list  # item indexes per cluster
    cluster_cdf: list  # popularity cdf within each cluster
    global_cdf: np.ndarray


def _world(rng, n_users, n_items, n_clusters, popularity_exponent) -> _World:
    popularity = 1.0 / np.arange(1, n_items + 1) ** popularity_exponent
    popularity = popularity[rng.permutation(n_items)]
    item_cluster = rng.integers(0, n_clusters, size=n_items)
    cluster_items, cluster_cdf = [], []
    for c in range(n_clusters):
        members = np.flatnonzero(item_cluster == c)
        if len(members) == 0:
            members = rng.integers(0, n_items, size=1)
        cluster_items.append(members)
        cluster_cdf.append(np.cumsum(popularity[members]) / popularity[members].sum())
    activity = rng.pareto(1.5, size=n_users) + 1.0
    n_liked = rng.integers(1, 4, size=n_users)
    liked = rng.integers(0, n_clusters, size=(n_users, 3))
    liked[n_liked < 2, 1] = liked[n_liked < 2, 0]
    liked[n_liked < 3, 2] = liked[n_liked < 3, 1]
    return _World(np.cumsum(activity) / activity.sum(), liked, cluster_items, cluster_cdf,
                  np.cumsum(popularity) / popularity.sum())


def _draw(world: _World, rng, rows: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    users = np.searchsorted(world.user_activity, rng.random(rows))
    clusters = world.user_clusters[users, rng.integers(0, 3, size=rows)]
    items = np.empty(rows, dtype=np.int64)
    for c, members in enumerate(world.cluster_items):
        at = np.flatnonzero(clusters == c)
        pick = np.searchsorted(world.cluster_cdf[c], rng.random(len(at)))
        items[at] = members[np.minimum(pick, len(members) - 1)]
    noisy = rng.random(rows) < noise
    items[noisy] = np.searchsorted(world.global_cdf, rng.random(int(noisy.sum())))
    return users, np.minimum(items, len(world.global_cdf) - 1)


def _frame(users, items, rng, n_users, n_items) -> pd.DataFrame:
    width_u, width_i = len(str(n_users)), len(str(n_items))
    return pd.DataFrame({
        "user_id": np.char.add("u", np.char.zfill(users.astype(str), width_u)).astype(object),
        "item_id": np.char.add("i", np.char.zfill(items.astype(str), width_i)).astype(object),
        "weight": rng.integers(1, 4, size=len(users)).astype(np.float64),
        "ts": TS_START + rng.integers(0, TS_SPAN, size=len(users)),
    })


def generate_interactions(
    n_users: int = 2000,
    n_items: int = 500,
    n_interactions: int = 60000,
    seed: int = 42,
    n_clusters: int = 12,
    noise: float = 0.15,
    popularity_exponent: float = 1.0,
) -> pd.DataFrame:
    """Interactions with columns user_id (str), item_id (str), weight (float), ts (epoch seconds)."""
    return next(iter_interactions(n_users, n_items, n_interactions, seed, n_clusters, noise,
                                  popularity_exponent, chunk_rows=max(n_interactions, 1)))


def iter_interactions(n_users=2000, n_items=500, n_interactions=60000, seed=42, n_clusters=12, noise=0.15,
                      popularity_exponent=1.0, chunk_rows=2_000_000):
    """Yield the interactions in DataFrame chunks of at most `chunk_rows` (bounded memory)."""
    world = _world(np.random.default_rng(seed), n_users, n_items, n_clusters, popularity_exponent)
    for chunk, start in enumerate(range(0, max(n_interactions, 1), chunk_rows)):
        rows = min(chunk_rows, n_interactions - start)
        rng = np.random.default_rng([seed, chunk])
        users, items = _draw(world, rng, rows, noise)
        yield _frame(users, items, rng, n_users, n_items)
