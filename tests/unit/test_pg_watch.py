"""bench/pg_watch.py's arithmetic: the window the rows arrived in, CPU summed per process over
consecutive snapshots (a backend that ends takes none of its earlier life into the window), the
kinds of Postgres processes by title."""

from __future__ import annotations

from bench.pg_watch import Snapshot, _kind, active_window, cpu_between, report


def snap(at: float, rows: int, cpu: dict[int, tuple[str, float]]) -> Snapshot:
    tables = {"messages": {"n_tup_ins": rows}}
    return Snapshot(at, {}, tables, {"wal_records": rows * 8}, {}, {}, {}, cpu)


def test_the_window_is_from_the_last_quiet_snapshot_to_the_first_after_the_rows() -> None:
    snaps = [snap(t, r, {}) for t, r in enumerate([0, 0, 0, 10, 30, 40, 40, 40])]
    window = active_window(snaps, "messages")
    assert [s.at for s in window] == [2, 3, 4, 5]


def test_cpu_is_each_process_growth_and_a_process_that_ends_takes_nothing_before() -> None:
    snaps = [
        snap(0, 0, {1: ("postmaster", 1.0), 7: ("backends", 50.0), 8: ("backends", 2.0)}),
        snap(1, 10, {1: ("postmaster", 1.0), 7: ("backends", 50.5), 8: ("backends", 2.5)}),
        # 7 ended (its 50 s of earlier life must not count), 9 was born with 0.25 s
        snap(2, 20, {1: ("postmaster", 1.1), 8: ("backends", 3.0), 9: ("walwriter", 0.25)}),
    ]
    cpu = {k: round(v, 6) for k, v in cpu_between(snaps).items()}
    assert cpu == {"postmaster": 0.1, "backends": 1.5, "walwriter": 0.25}
    out = report(snaps, "messages", "WITH f AS (")
    assert out["rows"] == 20
    assert out["wal_per_row"]["wal_records"] == 8
    assert round(out["cpu_us_per_row_total"]) == round(1e6 * 1.85 / 20)


def test_kinds_by_title() -> None:
    assert _kind("postgres: walwriter") == "walwriter"
    assert _kind("postgres: autovacuum worker hyperlocal") == "autovacuum worker"
    assert _kind("postgres: hyperlocal hyperlocal 127.0.0.1(5432) idle") == "backends"
    assert _kind("postgres: io worker 1") == "io worker"
