"""LightGBM lambdarank ranker over (query, candidate) feature rows.

Owns ``RankerConfig`` (hyper-parameters), ``LambdaRanker`` (train / score / serialise to bytes)
and ``training_groups`` (labels + query groups from candidates, dropping queries whose target
was not retrieved since they carry no ranking signal).

Guarantees: ``LambdaRanker.to_bytes()`` -> ``LambdaRanker.from_bytes()`` round-trips to a model
that gives identical scores; the feature names travel with the model and are checked on load.
Training is deterministic for a fixed seed (``deterministic=True``, fixed thread count).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import lightgbm as lgb
import numpy as np

from .candidates import CandidateSet
from .features import FEATURE_NAMES
from .queries import QueryBatch

_MAGIC = b"hyperlocal-lambdarank-v1\n"


@dataclass
class RankerConfig:
    """LightGBM lambdarank hyper-parameters (defaults tuned on the GETNext NYC val split)."""

    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 300
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    truncation_level: int = 10
    num_threads: int = 2
    seed: int = 0
    extra: dict[str, float | int | str] = field(default_factory=dict)

    def lgb_params(self) -> dict[str, object]:
        params: dict[str, object] = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [1, 5, 10],
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "lambdarank_truncation_level": self.truncation_level,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        params.update(self.extra)
        return params


def training_groups(qb: QueryBatch, cs: CandidateSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row mask, labels, group sizes) keeping only queries whose target is a candidate."""
    label = (cs.item == qb.target[cs.query]).astype(np.float64)
    keep_q = cs.contains_target(qb.target)
    rows = keep_q[cs.query]
    return rows, label[rows], cs.sizes()[keep_q]


class LambdaRanker:
    """A trained (or loaded) lambdarank booster bound to an ordered feature list."""

    def __init__(
        self,
        booster: lgb.Booster | None = None,
        feature_names: tuple[str, ...] = FEATURE_NAMES,
        config: RankerConfig | None = None,
    ) -> None:
        self.booster = booster
        self.feature_names = tuple(feature_names)
        self.config = config or RankerConfig()

    def fit(self, x: np.ndarray, y: np.ndarray, group: np.ndarray) -> LambdaRanker:
        """Train on rows ``x`` with 0/1 ``y``; ``group`` = consecutive rows per query."""
        if x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} features, got {x.shape[1]}")
        if int(np.sum(group)) != len(x):
            raise ValueError("group sizes do not add up to the number of rows")
        data = lgb.Dataset(
            x, label=y, group=group, feature_name=list(self.feature_names), free_raw_data=True
        )
        self.booster = lgb.train(
            self.config.lgb_params(), data, num_boost_round=self.config.n_estimators
        )
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        """Higher = better; one score per row."""
        if self.booster is None:
            raise RuntimeError("ranker is not trained")
        if len(x) == 0:
            return np.zeros(0)
        return np.asarray(self.booster.predict(x, num_threads=self.config.num_threads))

    def feature_importance(self) -> dict[str, float]:
        if self.booster is None:
            return {}
        gains = self.booster.feature_importance(importance_type="gain")
        return dict(zip(self.feature_names, map(float, gains), strict=True))

    def to_bytes(self) -> bytes:
        """Durable serialisation: header, JSON metadata line, LightGBM model text."""
        if self.booster is None:
            raise RuntimeError("ranker is not trained")
        cfg = asdict(self.config)
        meta = json.dumps({"feature_names": list(self.feature_names), "config": cfg})
        return _MAGIC + meta.encode() + b"\n" + self.booster.model_to_string().encode()

    @classmethod
    def from_bytes(
        cls, blob: bytes, expect_features: tuple[str, ...] | None = None
    ) -> LambdaRanker:
        if not blob.startswith(_MAGIC):
            raise ValueError("not a serialised LambdaRanker")
        meta_line, model_text = blob[len(_MAGIC) :].split(b"\n", 1)
        meta = json.loads(meta_line)
        names = tuple(meta["feature_names"])
        if expect_features is not None and names != tuple(expect_features):
            raise ValueError("serialised model was trained on a different feature list")
        booster = lgb.Booster(model_str=model_text.decode())
        return cls(booster, names, RankerConfig(**meta["config"]))
