"""`make bench [SCALE=60]`: generate the bench source, then measure side by side in one run and write the results.

    python -m bench.run [--scale 60] [--skip naive,peer,marts,...] [--repeat 2] [--no-generate] [--results-dir DIR]

Source: Postgres schema `bench_source` (never `source`); targets: scratch MySQL databases `test_bench_*`, dropped
at the end unless --keep. A measure that fails or is skipped is recorded in `notes` and its ratios are null.
Bound, naive, peer, ours full, ours incremental (each attempt after a 1 % change of its own) and marts run
--repeat times each (the servers settled before every attempt) and report their fastest attempt, with every
attempt's seconds in `attempts_s`: on this machine one attempt varies by ±20-40 % between runs, which a single
attempt would carry into the ratios. The streaming measures run once (each needs the state the one before it left).
It refuses to start while services of the stack it does not use run (Airflow, eventgen, the dashboard), unless
--allow-busy.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback

from shopflow.config import PROJECT_ROOT, get_settings
from shopflow.jobs.session import bind_to_loopback

from . import bound, marts, naive, ours, peer, report, stream_latency, streaming
from .args import parse_args, unlike_the_issue
from .common import CLUSTER_NOTES, SOURCE_MEASURES, check_source, drop_database, recreate_database, target_settings
from .cpu import CpuSampler
from .servers import daemon_running, ensure_servers, refuse_if_busy, stop_servers
from .settle import prewarm_innodb, settle, vacuum_source

def generate(scale: float, schema: str) -> float:
    """datagen.postgres into `schema`; its failure ends the bench with one line (datagen's own error is above it)."""
    env = os.environ | {"POSTGRES_SCHEMA": schema}
    start = time.monotonic()
    code = subprocess.call([sys.executable, "-m", "datagen.postgres", "--scale", str(scale), "--reset"],
                           env=env, cwd=PROJECT_ROOT)
    if code:
        raise SystemExit(f"bench: generating the source failed (datagen.postgres exit {code}, see above); "
                         "nothing was measured")
    return time.monotonic() - start


class Bench:
    def __init__(self, args, cpu: CpuSampler | None = None):
        self.args, self.base, self.cpu = args, get_settings(), cpu
        self.measures: dict[str, dict] = {}
        self.notes: list[str] = []
        self.skipped: list[str] = []
        self.failed: list[str] = []
        self.logs = PROJECT_ROOT / ".local" / "bench-logs"  # spark-submit output of each measure (git-ignored)
        self.schema = args.source_schema
        self.logs.mkdir(parents=True, exist_ok=True)

    def attempt(self, key: str, label: str, action, repeat: bool = False) -> None:
        """Runs `action` (fresh targets each time) once, or --repeat times when `repeat`, keeping each measure's
        fastest attempt."""
        if key.split("_")[0] in self.args.skip:
            self.notes.append(f"{label}: not measured: skipped (--skip)")
            self.skipped.append(label)
            return
        attempts = self.args.repeat if repeat else 1
        try:
            runs: dict[str, list] = {}
            for number in range(1, attempts + 1):
                print(f"[bench] {label}" + (f" (attempt {number}/{attempts})" if attempts > 1 else "") + " ...",
                      flush=True)
                quiet = settle(self.base)  # nothing an earlier measure left behind runs inside this one (settle.py)
                for measure_key, measure in action().items():
                    if self.cpu and measure.window:
                        measure.detail |= self.cpu.describe(*measure.window)
                    runs.setdefault(measure_key, []).append((measure, quiet))
                    print(f"[bench]   {measure.name}: {measure.rows:,} rows in {measure.seconds:.2f} s", flush=True)
            for measure_key, tried in runs.items():
                measure, quiet = min(tried, key=lambda pair: pair[0].seconds)
                if attempts > 1:
                    measure.detail["attempts_s"] = [round(m.seconds, 3) for m, _ in tried]
                self.measures[measure_key] = quiet | measure.as_json()  # a measure that settled itself keeps its own
        except Exception as error:  # one broken measure must not lose the others; its traceback goes to a file
            trace = self.logs / f"{key}.traceback"
            trace.write_text(traceback.format_exc())
            print(f"bench: {label}: not measured: {type(error).__name__}: {error} (traceback: {trace})",
                  file=sys.stderr, flush=True)
            self.notes.append(f"{label}: not measured: {type(error).__name__}: {str(error)[:300]}")
            self.failed.append(label)

    def db(self, suffix: str) -> str:
        return f"{self.args.target_prefix}_{suffix}"

    def fresh(self, suffix: str, with_tables: bool = True, replica_ddl: bool = False):
        return recreate_database(self.base, self.db(suffix), with_tables, self.schema, replica_ddl)

    def run(self) -> dict:
        base, logs = self.base, self.logs
        self.attempt("bound", "bound", lambda: {"bound": bound.measure_bound(
            self.fresh(bound.DATABASE, replica_ddl=True))}, repeat=True)
        self.attempt("bound_plain", "bound without FK indexes", lambda: {"bound_plain": bound.measure_bound(
            self.fresh(bound.DATABASE), "bound: COPY -> LOAD DATA, tables without FK indexes")}, repeat=True)
        self.attempt("bound_parallel", "bound, 3 tables at once", lambda: {"bound_parallel": bound.measure_bound(
            self.fresh(bound.DATABASE, replica_ddl=True), "bound: COPY -> LOAD DATA, 3 tables at once", streams=3)},
            repeat=True)
        replica = target_settings(base, self.db(ours.DATABASE), self.schema)

        def full():
            self.fresh(ours.DATABASE, with_tables=False)
            return {"ours_full": ours.run_replication(replica, "ours: replication full", ["--full"],
                                                      logs / "ours_full.log")}
        self.attempt("ours_full", "ours full", full, repeat=True)
        self.attempt("naive", "naive", lambda: {"naive": naive.measure_naive(
            self.fresh(naive.DATABASE, replica_ddl=True), logs / "naive.log")}, repeat=True)
        self.attempt("peer", "peer (dlt)", lambda: {"peer": peer.measure_peer(
            self.fresh(peer.DATABASE, with_tables=False))}, repeat=True)

        def incremental():  # each attempt after a 1 % change of its own, like the full run's best of --repeat
            if "ours_full" not in self.measures:
                raise RuntimeError("the full run did not complete")
            changed = ours.change_one_percent(replica)
            m = ours.run_replication(replica, "ours: replication incremental (1 %)", [], logs / "ours_incr.log")
            m.detail["rows_changed_in_source"] = changed
            return {"ours_incremental": m}
        self.attempt("ours_incremental", "ours incremental", incremental, repeat=True)

        def build_marts():  # over this run's replica: not one a failed, skipped or --keep'd earlier run left
            if "ours_full" not in self.measures:
                raise RuntimeError("the full run did not complete, so there is no replica of this run to build from")
            return marts.measure_marts(replica, logs / "marts.log")
        if "ours" in self.args.skip and "marts" not in self.args.skip:
            self.notes.append("marts: not measured: skipped (it builds from the replica of ours full, skipped)")
            self.skipped.append("marts")
        else:
            self.attempt("marts", "marts", build_marts, repeat=True)
        self.attempt("streaming", "streaming drain", lambda: streaming.measure_streaming(
            base, logs, self.args.stream_events, f"{self.schema}_stream"))
        self.attempt("streaming_continuous", "streaming continuous", lambda: stream_latency.measure_continuous(
            base, logs, f"{self.schema}_stream", self.args.stream_rate, self.args.stream_seconds,
            self.args.stream_warmup, self.args.stream_trigger))
        return self.measures

    def cleanup(self) -> None:
        """Each step on its own: one that fails (the broker gone, MySQL down) is a note, and neither the other steps
        nor the finished measures are lost (a traceback ended the bench before anything was written)."""
        if self.args.keep:
            return
        steps = [(f"drop {self.db(d)}", lambda d=d: drop_database(self.base, self.db(d)))
                 for d in (bound.DATABASE, naive.DATABASE, peer.DATABASE, ours.DATABASE)]
        steps.append(("drop the stream's scratch schema", lambda: streaming.drop_scratch(self.base,
                                                                                          f"{self.schema}_stream")))
        if "streaming" not in self.args.skip:  # else the bench did not start the broker
            steps.append(("delete the stream's topics", lambda: streaming.delete_topics(self.base)))
        for what, step in steps:
            try:
                step()
            except Exception as error:
                self.notes.append(f"cleanup: {what} failed: {type(error).__name__}: {str(error)[:200]}")
                print(f"bench: cleanup: {what} failed: {error}", file=sys.stderr, flush=True)


def exit_on_sigterm() -> None:
    """`kill` or a CI timeout (SIGTERM) ends the bench the way Ctrl-C does, through its `finally` blocks: they stop
    the continuous stream job (started in a process group of its own, which a signal to the bench alone would leave
    running on the cluster) and drop the scratch databases."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__.split("\n\n")[0])
    exit_on_sigterm()
    bind_to_loopback(get_settings().SPARK_MASTER_URL)  # the drivers it submits listen on 127.0.0.1, as the stack's
    started, daemon_was_running = [], daemon_running()
    try:
        busy = refuse_if_busy(args)
        ensure_servers(args, started)
        return _measure_and_report(args, busy)
    except KeyboardInterrupt:  # Ctrl-C (SIGINT to make and the bench): one line, not a traceback
        print("bench: interrupted: no result written; the measures' jobs and scratch databases are cleaned up",
              file=sys.stderr, flush=True)
        return 130
    finally:
        stop_servers(started, daemon_was_running, args.keep)


def _measure_and_report(args, busy: list[str]) -> int:
    unlike = unlike_the_issue(args, busy)  # before the measures: nothing after them may end the run unwritten
    if args.no_generate and SOURCE_MEASURES - args.skip:
        check_source(get_settings(), args.source_schema)
    print("bench: writing every free page of InnoDB's buffer pool once (see bench/settle.py) ...", flush=True)
    prewarm = prewarm_innodb(get_settings())
    print(f"bench: {prewarm['pages']} free buffer pool pages written in {prewarm['seconds']} s", flush=True)
    load_start = [round(x, 2) for x in os.getloadavg()]
    generate_s = None if args.no_generate else generate(args.scale, args.source_schema)
    vacuum_s = None if args.no_generate else vacuum_source(get_settings(), args.source_schema)
    with CpuSampler() as cpu:
        bench = Bench(args, cpu)
        try:
            measures = bench.run()
        finally:
            bench.cleanup()
    ratio_values = report.ratios(measures)
    busy_notes = ([f"measured with --allow-busy while {', '.join(busy)} ran (they shared the cores with the measures)"]
                  if busy else [])
    if (parallel := report.ratio(measures.get("ours_full"), measures.get("bound_parallel"))) is not None:
        busy_notes.append(f"informative, in no ratio: replication full vs the bound loading 3 tables at once "
                          f"{parallel} (the issue's bound is one stream)")
    notes = bench.notes + CLUSTER_NOTES + busy_notes + [
        f"{k}: null because a measure it needs is missing (see above)" for k, v in ratio_values.items() if v is None]
    if args.no_generate:  # --scale did nothing: the source is an earlier run's, of whatever scale it had
        notes.append("scale: null: the source of an earlier run was reused (--no-generate); the measures' rows give "
                     "its size")
    result = {"scale": None if args.no_generate else args.scale, "source_schema": args.source_schema,
              "generate_s": generate_s,
              "source_vacuum_s": vacuum_s,
              "innodb_prewarm": prewarm,
              "machine": report.machine() | {"load_average_at_start": load_start, "other_services_running": busy},
              "versions": report.versions(bench.base), "measures": list(measures.values()),
              "ratios": ratio_values, "notes": notes}
    report.write_and_show(result, args.results_dir, not_measured=bench.skipped + bench.failed, unlike=unlike)
    if bench.failed:
        print(f"bench: failed: {', '.join(bench.failed)} (see the notes above and {bench.logs})", file=sys.stderr)
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
