"""`hyperlocal recommend eval|train`: the offline evaluation and the training trigger.

``eval`` reproduces the GETNext protocol on the Foursquare NYC check-ins (TSMC2014; Yang et al.,
IEEE TSMC: Systems 45(1), 2015) found in ``--data`` (research/evaluation use only: the files are
read from where they are, never copied into the product). It trains the ranker on the window
before the chosen split, scores the last check-in of each of the split's trajectories against
every POI and prints one table; its last line is ``ranker Acc@1=.. Acc@5=.. Acc@10=.. MRR=..``.
Tune with ``--split val``; report ``--split test``.

``train`` runs the product trainer (cluster/trainer.py) on Ray against Postgres.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
import time
from pathlib import Path
from typing import Any

from models.recommend.data import CheckinData, Trajectory, checkin_rows, getnext_rows
from models.recommend.evaluate import Recipe, ablation, evaluate, leakage_checks, train_ranker
from models.recommend.metrics import BOOTSTRAP_SAMPLES, MetricRow, bootstrap_ci, paired_diff_ci
from models.recommend.stats import DAY_S, EMBED_DIM

CHECKINS = "foursquare_nyc_checkins.tsv.gz"
SPLIT = "foursquare_nyc_getnext_split.tsv.gz"
GETNEXT = {"val": "getnext_nyc_val.csv.gz", "test": "getnext_nyc_test.csv.gz"}
PUBLISHED = (
    # name, Acc@1, Acc@5, Acc@10, MRR as published for NYC (None: not published). Approximate
    # references only: each paper preprocesses the check-ins its own way (STHGCN: 1,048 users,
    # 4,981 POIs), trains on its own split, and we did not re-run them.
    ("GETNext (published)", 0.2435, 0.5089, 0.6143, 0.3621),
    ("STHGCN (published)", 0.2734, 0.5361, 0.6244, 0.3915),
    ("LLM4POI (published)", 0.3372, None, None, None),
)
CI_METRICS = ("acc1", "acc5", "acc10", "mrr")


class Progress:
    """One self-rewriting status line on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()

    def __call__(self, step: str, done: int, total: int) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f}s] {step} {done}/{total}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        elif done == 0 or done == total:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(f"done in {time.monotonic() - self.t0:.1f}s\n")


def load_checkins(root: Path) -> CheckinData:
    with gzip.open(root / SPLIT, "rt") as f:
        labels = [line.rstrip("\n").split("\t")[1] for line in f if not line.startswith("#")]
    with gzip.open(root / CHECKINS, "rt", newline="") as f:
        return checkin_rows(csv.DictReader(f, delimiter="\t"), labels[1:])  # [0]: the header


def load_trajectories(root: Path, split: str, data: CheckinData) -> list[Trajectory]:
    with gzip.open(root / GETNEXT[split], "rt", newline="") as f:
        return getnext_rows(csv.DictReader(f), data.catalog)


def cmd_eval(args: argparse.Namespace) -> int:
    root = Path(args.data)
    missing = [n for n in (CHECKINS, SPLIT, GETNEXT[args.split]) if not (root / n).exists()]
    if missing:
        print(f"missing in {root}: {', '.join(missing)} (see its README)", file=sys.stderr)
        return 2
    progress = Progress()
    progress("load check-ins", 0, 1)
    data = load_checkins(root)
    trajs = load_trajectories(root, args.split, data)
    cutoff = float(min(t.ts[0] for t in trajs))
    if args.history == "train":  # GETNext's own view: nothing after the validation start
        cutoff = float(min(t.ts[0] for t in load_trajectories(root, "val", data)))
    recipe = Recipe()
    recipe.ranker.num_threads = args.threads
    # the split's queries start this long after the history ends (--history train on test:
    # the validation period); the training windows see statistics as old (0 otherwise)
    lag_days = (float(min(t.ts[0] for t in trajs)) - cutoff) / DAY_S
    recipe.stats_lag_days = lag_days if args.stats_lag == "auto" else 0.0
    if args.windows is not None:
        recipe.train_windows = args.windows
    recipe.query_at_target = args.query_time == "target"
    if args.embeddings:  # the learned retriever and its features (a variant, off by default)
        recipe.stats.embed_dim = EMBED_DIM
    if args.leakage:
        checks = leakage_checks(data.log, data.catalog, trajs, cutoff, recipe, progress)
        progress.done()
        for name in ("ranker", "truncated", "shuffled", "MostPop"):
            row = checks[name]
            assert isinstance(row, MetricRow)
            print(f"{name:<10} {row.format_short()}")
        print(f"rows at or after the cutoff deleted: ranks identical = {checks['identical']}")
        return 0
    if args.ablation:
        table = ablation(data.log, data.catalog, trajs, cutoff, recipe, progress)
        progress.done()
        print_ablation(args.split, args.history, table)
        return 0
    ranker, train_info = train_ranker(data.log, data.catalog, cutoff, recipe, progress)
    rows, info = evaluate(data.log, data.catalog, trajs, ranker, recipe, progress, cutoff)
    progress.done()
    before = time.strftime("%Y-%m-%d %H:%M", time.gmtime(cutoff))
    print(
        f"# {args.split}: {int(info['queries'])} trajectories (last check-in), "
        f"{data.catalog.n_items} POIs ranked, history before {before} UTC; "
        f"candidate recall {info['candidate_recall']:.4f} "
        f"(mean {info['mean_candidates']:.0f} candidates); ranker trained on "
        f"{int(train_info['queries'])} queries, statistics {recipe.stats_lag_days:.1f} days "
        "older than each training window"
    )
    if args.embeddings:
        print(
            f"# --embeddings: the learned POI embeddings ({EMBED_DIM} dimensions), their "
            "retriever and their features are on"
        )
    if recipe.query_at_target:
        print(
            "# --query-time target: every query is asked at its target's time (LLM4POI's prompt "
            "does this); not the GETNext protocol, not comparable with GETNext or STHGCN"
        )
    print_table(rows)
    print(rows[-1].format_short())
    return 0


def print_ablation(split: str, history: str, table: list[tuple[str, MetricRow]]) -> None:
    """One row per feature family left out, with the change against all features."""
    full = table[0][1]
    print(f"# ablation on {split} (--history {history}): the ranker retrained without each family")
    heads = ("Acc@1", "Acc@10", "MRR", "dAcc@1", "dAcc@10", "dMRR")
    print(f"{'features':<36}" + "".join(f"{h:>8}" for h in heads))
    for name, row in table:
        vals = (row.acc1, row.acc10, row.mrr)
        deltas = (row.acc1 - full.acc1, row.acc10 - full.acc10, row.mrr - full.mrr)
        print(
            f"{name:<36}"
            + "".join(f"{v:>8.4f}" for v in vals)
            + "".join(f"{d:>+8.4f}" for d in deltas)
        )


def _cell(value: float | None, width: int = 8) -> str:
    return f"{value:>{width}.4f}" if value is not None else " " * width


def print_table(rows: list[MetricRow]) -> None:
    """Our rows with 95 % bootstrap intervals over the queries, the ranker's paired lead over
    the best baseline, then the published figures (approximate references)."""
    print(f"{'model':<22}{'Acc@1':>8}{'Acc@5':>8}{'Acc@10':>8}{'MRR':>8}{'NDCG@10':>9}")
    for row in rows:
        print(
            f"{row.name:<22}{row.acc1:>8.4f}{row.acc5:>8.4f}{row.acc10:>8.4f}"
            f"{row.mrr:>8.4f}{row.ndcg10:>9.4f}"
        )
    print(f"# 95 % bootstrap intervals ({BOOTSTRAP_SAMPLES} resamples of the queries, seed 0)")
    for row in rows:
        assert row.ranks is not None
        ci = bootstrap_ci(row.ranks)
        print(
            f"{row.name + ' CI':<22}"
            + "".join(f"{ci[m][0]:>8.3f}-{ci[m][1]:.3f}" for m in CI_METRICS)
        )
    ranker, base = rows[-1], max(rows[:-1], key=lambda r: r.mrr, default=None)
    if base is not None and ranker.ranks is not None and base.ranks is not None:
        diff = paired_diff_ci(ranker.ranks, base.ranks)
        print(f"# paired lead of {ranker.name} over {base.name} (95 % interval of the difference)")
        print(
            f"{'lead CI':<22}"
            + "".join(f"{diff[m][0]:>+8.3f}..{diff[m][1]:+.3f}" for m in CI_METRICS)
        )
    print("# published, approximate references (their own preprocessing and split; not re-run)")
    for name, a1, a5, a10, mrr in PUBLISHED:
        print(f"{name:<22}{_cell(a1)}{_cell(a5)}{_cell(a10)}{_cell(mrr)}")
    if ranker.ranks is not None:
        ci = bootstrap_ci(ranker.ranks)
        inside = [
            f"{name} {label}"
            for name, *vals in PUBLISHED
            for label, m, v in zip(
                ("Acc@1", "Acc@5", "Acc@10", "MRR"), CI_METRICS, vals, strict=True
            )
            if v is not None and v >= ci[m][0]
        ]
        print(
            "# published figures the ranker does not clearly beat (at or above its interval's "
            "low end): " + (", ".join(inside) or "none")
        )


def cmd_train(args: argparse.Namespace) -> int:
    from cluster.trainer import run_cli

    return run_cli(args)


def register(subparsers: Any) -> None:
    """Add ``recommend eval`` and ``recommend train`` to the top-level CLI."""
    rec = subparsers.add_parser("recommend", help="recommendation: offline eval, training")
    sub = rec.add_subparsers(dest="recommend_command", required=True)
    ev = sub.add_parser("eval", help="GETNext-protocol evaluation on the Foursquare NYC data")
    ev.add_argument("--data", default="../shared/data", help="folder with the NYC files")
    ev.add_argument("--split", choices=("val", "test"), default="test")
    ev.add_argument(
        "--history",
        choices=("split", "train"),
        default="split",
        help="history for features: everything before the split (default) or before val only",
    )
    ev.add_argument(
        "--ablation", action="store_true", help="retrain without each feature family in turn"
    )
    ev.add_argument(
        "--leakage",
        action="store_true",
        help="retrain without the rows at/after the cutoff, and on shuffled targets",
    )
    ev.add_argument(
        "--windows", type=int, default=None, help="training windows (default: the recipe's 6)"
    )
    ev.add_argument(
        "--stats-lag",
        choices=("auto", "none"),
        default="auto",
        help="auto: training windows see statistics as old as the split's (none: current)",
    )
    ev.add_argument(
        "--query-time",
        choices=("prefix", "target"),
        default="prefix",
        help="prefix: a query is asked at its last input check-in (the protocol); target: at the "
        "time of the check-in to predict (a labelled variant, as LLM4POI's prompt)",
    )
    ev.add_argument(
        "--embeddings",
        action="store_true",
        help="also fit the learned POI embeddings: their retriever and features (a variant)",
    )
    ev.add_argument("--threads", type=int, default=2, help="LightGBM threads (1: share the box)")
    ev.set_defaults(func=cmd_eval)
    tr = sub.add_parser("train", help="train the global and per-cell rankers on Ray")
    tr.add_argument("--cells", nargs="*", default=None, help="only these cells (no global)")
    tr.add_argument("--loop", action="store_true", help="retrain every recommend_retrain_s")
    tr.set_defaults(func=cmd_train)
