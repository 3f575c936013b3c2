"""The learned POI embeddings (issue #19): the retriever and the sequence features, on small
generated data (no Ray, no dataset)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.recommend.candidates import EMB, EMBU, CandidateConfig, CandidateGenerator
from models.recommend.data import Catalog, Interaction, InteractionLog, split_trajectories
from models.recommend.embeddings import (
    EmbeddingConfig,
    PoiEmbeddings,
    factorise,
    flow_counts,
    ppmi,
)
from models.recommend.features import FEATURE_FAMILIES, FEATURE_NAMES, build_features
from models.recommend.queries import QueryBatch
from models.recommend.serving import (
    ModelBundle,
    Snapshot,
    _sources,
    _user_query,
    encode,
    product_recipe,
    rank,
    train_scope,
)
from models.recommend.stats import EMBED_DIM, HistoryStats, StatsConfig
from models.recommend.synthetic import make_events, make_items

A, C, B = "a", "c", "b"  # A and C lead to the same places; only A ever led to B
SHARED = ["x0", "x1", "x2", "x3"]


def _planted() -> tuple[Catalog, InteractionLog]:
    """Trajectories a -> x*, a -> b and c -> x*, plus random noise walks; c -> b never."""
    rng = np.random.default_rng(7)
    noise = [f"n{k}" for k in range(40)]
    events: list[Interaction] = []
    t = 1_000_000.0

    def walk(user: str, items: list[str]) -> None:
        nonlocal t
        for it in items:
            events.append(Interaction(user, it, t, lat=40.7, lng=-74.0))
            t += 600.0
        t += 3 * 86400.0  # the next walk is another trajectory

    for k in range(30):
        walk(f"u{k % 10}", [A, SHARED[k % 4]])
        walk(f"u{k % 10}", [C, SHARED[(k + 1) % 4]])
        if k % 2 == 0:
            walk(f"u{k % 10}", [A, B])
    for k in range(120):
        walk(f"w{k % 15}", [str(x) for x in rng.choice(noise, size=3, replace=False)])
    catalog = Catalog()
    return catalog, InteractionLog.from_interactions(events, catalog)


def test_the_flow_retriever_finds_a_planted_neighbour_the_counts_never_saw() -> None:
    catalog, log = _planted()
    stats = HistoryStats(log, catalog, float(log.ts[-1]) + 1, StatsConfig(embed_dim=16))
    a, c, b = (catalog.find_item(x) for x in (A, C, B))
    assert a is not None and c is not None and b is not None
    assert b not in stats.transitions_from(c)  # nobody went c -> b
    ranking = stats.emb.flow_ranking(stats.emb.out_vec[c], 6)
    assert b in ranking  # the factorisation generalises: c behaves like a, and a -> b
    noise = [catalog.find_item(f"n{k}") for k in range(40)]
    flow = stats.emb.out_vec[c] @ stats.emb.in_vec.T
    assert flow[b] > np.max(flow[noise])
    # and the candidate generator proposes it from a trajectory ending at c, flagged EMB
    qb = QueryBatch.single(0, [c], [float(log.ts[-1])], float(log.ts[-1]) + 60, 12, 2)
    cfg = CandidateConfig(hist_k=0, trans_k=5, trans2_k=0, sim_k=0, near_k=0, pop_k=0)
    cfg.near_last_k, cfg.transk_k, cfg.emb_k, cfg.emb_user_k = 0, 0, 6, 0
    items, src = CandidateGenerator(stats, cfg).for_query(qb, 0, None)
    assert b in items and src[list(items).index(b)] & EMB
    cfg.emb_k = 0  # without the learned source the counts do not propose it
    items, _ = CandidateGenerator(stats, cfg).for_query(qb, 0, None)
    assert b not in items


def test_learned_sources_only_add_items_the_others_did_not_propose() -> None:
    items = make_items(80, seed=3)
    catalog, log = encode(items, make_events(items, n_users=20, days=20, seed=3))
    cut = float(np.quantile(log.ts, 0.7))
    stats = HistoryStats(log.before(cut), catalog, cut, StatsConfig(embed_dim=EMBED_DIM))
    qb = QueryBatch.from_trajectories(split_trajectories(log.subset(log.ts >= cut)))
    cfg = CandidateConfig()
    cs = CandidateGenerator(stats, cfg).generate(qb)
    learned = (cs.source & (EMB | EMBU)) > 0
    assert learned.any()
    assert np.all(cs.source[learned] & ~(EMB | EMBU) == 0)  # nothing else proposed them
    for q in range(len(qb)):
        src = cs.source[cs.offsets[q] : cs.offsets[q + 1]]
        assert np.sum((src & EMB) > 0) <= cfg.emb_k
        assert np.sum((src & EMBU) > 0) <= cfg.emb_user_k
    plain = CandidateGenerator(stats, CandidateConfig(emb_k=0, emb_user_k=0)).generate(qb)
    assert plain.recall(qb.target) <= cs.recall(qb.target)
    assert np.mean(plain.sizes()) < np.mean(cs.sizes())
    off = HistoryStats(log.before(cut), catalog, cut)  # the default: no embeddings
    none = CandidateGenerator(off, cfg).generate(qb)
    assert not np.any(none.source & (EMB | EMBU))
    assert np.array_equal(none.item, plain.item)


def test_without_embeddings_their_features_are_missing() -> None:
    items = make_items(40, seed=2)
    catalog, log = encode(items, make_events(items, n_users=10, days=10, seed=2))
    cut = float(np.quantile(log.ts, 0.7))
    stats = HistoryStats(log.before(cut), catalog, cut)
    qb = QueryBatch.from_trajectories(split_trajectories(log.subset(log.ts >= cut)))
    cs = CandidateGenerator(stats).generate(qb)
    cols = [FEATURE_NAMES.index(n) for n in FEATURE_FAMILIES["learned embeddings"]]
    assert np.all(np.isnan(build_features(qb, cs, stats)[:, cols]))


def test_embedding_features_are_finite_deterministic_and_blind_to_the_target() -> None:
    items = make_items(80, seed=5)
    catalog, log = encode(items, make_events(items, n_users=20, days=20, seed=5))
    cut = float(np.quantile(log.ts, 0.7))
    trajs = split_trajectories(log.subset(log.ts >= cut))
    qb = QueryBatch.from_trajectories(trajs, last_only=False, min_prefix=0)
    names = FEATURE_FAMILIES["learned embeddings"]
    cols = [FEATURE_NAMES.index(n) for n in names]
    runs = []
    for _ in range(2):  # fitted twice from scratch: bit-identical
        stats = HistoryStats(log.before(cut), catalog, cut, StatsConfig(embed_dim=EMBED_DIM))
        cs = CandidateGenerator(stats).generate(qb)
        runs.append(build_features(qb, cs, stats)[:, cols])
    assert np.array_equal(runs[0], runs[1], equal_nan=True)
    x = runs[0]
    no_prefix = (qb.prefix_len() == 0)[cs.query]
    assert no_prefix.any() and (~no_prefix).any()
    assert np.all(np.isfinite(x[~no_prefix]))  # defined wherever there is a prefix
    assert np.all(np.isnan(x[no_prefix][:, [0, 1, 2, 3]]))  # missing without one, not 0
    assert np.all(np.isfinite(x[no_prefix][:, 4:]))  # the user-item score needs no prefix
    assert np.any(x[:, 1] != 0) and np.any(x[:, 4] != 0)
    qb.target[:] = (qb.target + 1) % catalog.n_items
    again = build_features(qb, cs, stats)[:, cols]
    assert np.array_equal(x, again, equal_nan=True)


def test_factorisations_of_tiny_or_empty_histories() -> None:
    empty = InteractionLog.empty()
    emb = PoiEmbeddings.fit(empty, 3, 4, EmbeddingConfig(dim=8))
    assert emb.out_vec.shape == (4, 8) and not emb.out_vec.any() and not emb.user_vec.any()
    assert len(emb.flow_ranking(np.zeros(8), 5)) == 0 and len(emb.user_ranking(0, 5)) == 0
    off = PoiEmbeddings.fit(empty, 3, 4, EmbeddingConfig(dim=0))
    assert off.in_vec.shape == (4, 0)
    small = ppmi(np.eye(3))
    left, right = factorise(small, 8)  # as many columns as the matrix has
    assert left.shape == (3, 3) and right.shape == (3, 3)
    assert np.allclose(left @ right.T, small.toarray())


def test_flow_counts_stay_inside_a_trajectory_and_weigh_by_steps() -> None:
    catalog = Catalog()
    day = 86400.0
    events = [
        Interaction("u", "p", 0.0),
        Interaction("u", "q", 60.0),
        Interaction("u", "r", 120.0),
        Interaction("u", "s", 120.0 + 2 * day),  # a new trajectory
    ]
    log = InteractionLog.from_interactions(events, catalog)
    m = flow_counts(log, catalog.n_items, window=2, gap_s=day).toarray()
    p, q, r, s = (catalog.find_item(x) for x in "pqrs")
    assert m[p, q] == 1.0 and m[q, r] == 1.0 and m[p, r] == pytest.approx(0.5)
    assert m[r, s] == 0.0 and m[q, s] == 0.0 and m[q, p] == 0.0  # gap, and directed


def test_the_randomised_svd_recovers_a_low_rank_matrix() -> None:
    rng = np.random.default_rng(1)
    dense = rng.random((120, 3)) @ rng.random((3, 90))  # rank 3
    dense[dense < np.quantile(dense, 0.2)] = 0.0  # some sparsity, still close to rank 3
    exact = np.linalg.svd(dense, compute_uv=False)
    left, right = factorise(sp.csr_matrix(dense), 8)
    assert left.shape == (120, 8) and right.shape == (90, 8)
    approx = np.linalg.svd(left @ right.T, compute_uv=False)
    assert np.allclose(approx[:8], exact[:8], rtol=1e-3)  # the top singular values
    again = factorise(sp.csr_matrix(dense), 8)
    assert np.array_equal(left, again[0]) and np.array_equal(right, again[1])  # seeded


def test_serving_flags_and_scores_with_the_embeddings_on() -> None:
    items = make_items(120, seed=4)
    events = make_events(items, n_users=25, days=20, seed=4)
    recipe = product_recipe(8, 1)
    recipe.stats.embed_dim = 16
    ranker, _ = train_scope("global", items, events, recipe)
    bundle = ModelBundle.from_bytes(ModelBundle("global", 1, ranker, recipe, {}).to_bytes())
    assert bundle.recipe.stats.embed_dim == 16  # the bundle carries the switch
    now = events[-1].timestamp + 60
    snap = Snapshot(items, events, now, bundle.recipe.stats)
    user = events[-1].user_id
    lat, lng = items[0].lat, items[0].lng
    qb = _user_query(snap, user, lat, lng, now)
    st, cfg = snap.stats, bundle.recipe.candidates
    cell = st.cell_at(lat, lng)
    cand, src = CandidateGenerator(st, cfg).for_query(qb, 0, cell)
    served = _sources(st, qb, cand, cell, cfg)
    learned = EMB | EMBU
    assert np.any(src & learned)  # the generator proposed some, and serving flags the same
    assert np.array_equal(served & learned, src & learned)
    scores = rank(bundle, snap, user, lat, lng, [items[int(i)] for i in cand], now=now)
    assert len(scores) == len(cand) and np.all(np.isfinite(scores))
