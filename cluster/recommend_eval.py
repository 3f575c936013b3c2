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
from models.recommend.evaluate import Recipe, evaluate, train_ranker

CHECKINS = "foursquare_nyc_checkins.tsv.gz"
SPLIT = "foursquare_nyc_getnext_split.tsv.gz"
GETNEXT = {"val": "getnext_nyc_val.csv.gz", "test": "getnext_nyc_test.csv.gz"}
PUBLISHED = (
    # name, Acc@1, Acc@5, Acc@10, MRR (NYC, same protocol, as published)
    ("GETNext (published)", 0.2435, 0.5089, 0.6143, 0.3621),
    ("STHGCN (published)", 0.2734, 0.5361, 0.6244, 0.3915),
)


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
    ranker, train_info = train_ranker(data.log, data.catalog, cutoff, recipe, progress)
    rows, info = evaluate(data.log, data.catalog, trajs, ranker, recipe, progress, cutoff)
    progress.done()
    before = time.strftime("%Y-%m-%d %H:%M", time.gmtime(cutoff))
    print(
        f"# {args.split}: {int(info['queries'])} trajectories (last check-in), "
        f"{data.catalog.n_items} POIs ranked, history before {before} UTC; "
        f"candidate recall {info['candidate_recall']:.4f} "
        f"(mean {info['mean_candidates']:.0f} candidates); ranker trained on "
        f"{int(train_info['queries'])} queries"
    )
    print(f"{'model':<22}{'Acc@1':>8}{'Acc@5':>8}{'Acc@10':>8}{'MRR':>8}{'NDCG@10':>9}")
    for name, a1, a5, a10, mrr in PUBLISHED:
        print(f"{name:<22}{a1:>8.4f}{a5:>8.4f}{a10:>8.4f}{mrr:>8.4f}{'':>9}")
    for row in rows[:-1]:
        print(
            f"{row.name:<22}{row.acc1:>8.4f}{row.acc5:>8.4f}{row.acc10:>8.4f}"
            f"{row.mrr:>8.4f}{row.ndcg10:>9.4f}"
        )
    print(f"# ranker NDCG@10={rows[-1].ndcg10:.4f}")
    print(rows[-1].format_short())
    return 0


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
    ev.set_defaults(func=cmd_eval)
    tr = sub.add_parser("train", help="train the global and per-cell rankers on Ray")
    tr.add_argument("--cells", nargs="*", default=None, help="only these cells (no global)")
    tr.add_argument("--loop", action="store_true", help="retrain every recommend_retrain_s")
    tr.set_defaults(func=cmd_train)
