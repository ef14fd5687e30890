"""Results: the ratios, machine and versions, the on-screen table, the JSON files and the PNG chart."""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

RATIO_KEYS = ("replication_full_vs_bound", "replication_full_vs_naive", "replication_full_vs_peer",
              "replication_incremental_vs_full", "stream_drain_vs_bound", "stream_p95_latency_s",
              "marts_spark_vs_duckdb")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def ratio(a: dict | None, b: dict | None, key: str = "rows_per_s") -> float | None:
    if not a or not b or not b.get(key):
        return None
    return round(a[key] / b[key], 3)


def ratios(m: dict[str, dict]) -> dict:
    full, incremental = m.get("ours_full"), m.get("ours_incremental")
    return {
        "replication_full_vs_bound": ratio(full, m.get("bound")),
        "replication_full_vs_naive": ratio(full, m.get("naive")),
        "replication_full_vs_peer": ratio(full, m.get("peer")),
        # time of an incremental run relative to a full one (goal <= 0.1)
        "replication_incremental_vs_full": ratio(incremental, full, key="seconds"),
        "stream_drain_vs_bound": ratio(m.get("stream_drain"), m.get("stream_bound")),
        "stream_p95_latency_s": (m.get("stream_continuous") or {}).get("p95_latency_s"),
        # Spark time relative to DuckDB time (goal <= 3)
        "marts_spark_vs_duckdb": ratio(m.get("marts_spark"), m.get("marts_duckdb"), key="seconds"),
    }


def _version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception:  # a missing tool is recorded as None
        return None


def machine() -> dict:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"cores": os.cpu_count(), "ram_gib": round(pages / 2**30, 1), "platform": platform.platform(),
            "load_average_at_start": None, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}


def versions(settings) -> dict:
    from shopflow.db import mysql_connection, pg_connection
    result = {"python": platform.python_version()}
    for package in ("pyspark", "dlt", "duckdb", "connectorx", "psycopg2-binary", "psycopg2", "mysql-connector-python"):
        try:
            result[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    for server, ask in (("postgres", lambda: _server_version(pg_connection(settings), "SHOW server_version")),
                        ("mysql", lambda: _server_version(mysql_connection(settings), "SELECT VERSION()"))):
        try:
            result[server] = ask()
        except Exception as error:  # a server gone by the end: the measures are written all the same
            result[server] = None
            print(f"bench: the {server} version is unknown ({type(error).__name__}: {error})", flush=True)
    result["java"] = _version(["java", "-version"])
    return result


def _server_version(connection, query: str) -> str:
    with connection as conn:
        cur = conn.cursor()
        cur.execute(query)
        return cur.fetchone()[0]


def _cores(measure: dict) -> str:
    """The machine's cores kept busy on average while the measure ran (bench/cpu.py), blank when not known."""
    busy = measure.get("cpu_cores_busy")
    return "" if busy is None else f"{busy:.2f}"


def table(measures: list[dict], ratio_values: dict) -> str:
    width = max([44] + [len(m["name"]) + 2 for m in measures])  # the longest name still leaves a gap
    lines = [f"{'measure':<{width}}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'cores busy':>12}", "-" * (width + 46)]
    for m in measures:
        lines.append(f"{m['name']:<{width}}{m['rows']:>12,}{m['seconds']:>10.2f}{m['rows_per_s']:>12,.0f}"
                     f"{_cores(m):>12}")
    lines += ["", "ratios"]
    lines += [f"  {k:<36}{'not measured' if v is None else v}" for k, v in ratio_values.items()]
    return "\n".join(lines)


def chart(measures: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m["name"] for m in measures]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(names) + 1.5))
    if not measures:  # every measure failed: the chart says so (the notes say why)
        ax.text(0.5, 0.5, "no measure completed (see the notes in the JSON)", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title(title, fontsize=10)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return
    ax.barh(names, [m["rows_per_s"] for m in measures], color="#4C72B0")
    for i, m in enumerate(measures):
        ax.text(m["rows_per_s"], i, f" {m['rows_per_s']:,.0f}  ({m['seconds']:.1f} s)", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")  # the bounds are 10-500x the measured jobs
    ax.set_xlabel("rows / s, log scale (higher is better)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict, results_dir: Path = RESULTS_DIR, latest: bool = True) -> Path:
    """`<UTC stamp>.json`, and with `latest` (a run that measured everything) latest.json and latest.png."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    dated = results_dir / f"{stamp}.json"
    text = json.dumps(result, indent=2, default=str)
    dated.write_text(text)
    if not latest:
        return dated
    (results_dir / "latest.json").write_text(text)
    scale = "of a reused source" if result["scale"] is None else result["scale"]
    title = f"shopflow bench, scale {scale}, {result['machine']['cores']} cores ({stamp})"
    chart(result["measures"], results_dir / "latest.png", title)
    return dated


def write_and_show(result: dict, results_dir: Path, not_measured: list[str], unlike: list[str] = ()) -> None:
    """Writes the results (latest.* only if nothing is in `not_measured` and the run is like the issue's: `unlike`
    names how it is not) and prints the table, notes and paths."""
    path = write(result, results_dir, latest=not not_measured and not unlike)
    print(table(result["measures"], result["ratios"]))
    for note in result["notes"]:
        print(f"note: {note}")
    if not_measured or unlike:
        why = (f"not every measure was measured ({', '.join(not_measured)})" if not_measured else
               f"the run is not the issue's ({', '.join(unlike)})")
        print(f"written: {path}; latest.json and latest.png (the README's chart) are left as they were: {why}")
    else:
        print(f"written: {path}, {results_dir / 'latest.json'}, {results_dir / 'latest.png'}")


def markdown(result: dict) -> str:
    """The README table of a result (`python -m bench.report [path]` prints it for latest.json)."""
    lines = ["| measure | rows | seconds | rows/s | cores busy |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {m['name']} | {m['rows']:,} | {m['seconds']:.2f} | {m['rows_per_s']:,.0f} | {_cores(m)} |"
              for m in result["measures"]]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| `{k}` | {'not measured' if v is None else v} |" for k, v in result["ratios"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m bench.report", description="The README tables of a bench result.")
    parser.add_argument("result", nargs="?", type=Path, default=RESULTS_DIR / "latest.json",
                        help="a results JSON (default: bench/results/latest.json)")
    source = parser.parse_args(argv).result
    try:
        result = json.loads(source.read_text())
    except (OSError, ValueError) as error:
        parser.exit(2, f"bench.report: cannot read {source}: {error}\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
