"""Section 6b of ``make bench``: members per hour on the compose Ray cluster with one worker and with two.

Driven as a user drives it: ``make run-cluster`` with ``CLUSTER_WORKERS=1`` or ``2``, the same spec (the
smoke sweep: 4 members, 8 folds) and a fresh ``RUNS_DIR`` each time, so no member is reused; the two
sides alternate, and who goes first swaps each repeat. Every figure is read from the records the run
leaves: the sweep's time from ``sweep.json`` (``started_at`` to ``ended_at``, which the driver stamps once
it has joined the cluster and loaded the data: opening the members, every fold, every record written),
split at the first fold's start and the last fold's end (the folds' own times, in the same file), the
node each fold ran on, and each fold's fit and predict from the members' ``run.json``. The cluster's
start (``up`` until every node is alive) is read from make's own log line and kept apart, as is the whole
``make run-cluster`` (image check, start, driver, ``down``).

Each worker is one CPU (the compose file's ``cpus: 1`` and ``--num-cpus=1``), so 2 workers run 2 folds at
a time; on a 2-core machine that is the most there is, and 2x is the ceiling. Without a Docker engine the
section says "not measured" and why; it never estimates.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import time
from datetime import datetime
from pathlib import Path

from make_env import clean_env

from roadrisk.compare.stats import speed_up
from roadrisk.sweep import spec as sweep_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = "sweeps/smoke-cpu.toml"  # a file under sweeps/: the only folder the cluster's head mounts
WORKER_COUNTS = (1, 2)
ALIVE = re.compile(r"Ray cluster: (\d+) nodes alive after ([\d.]+) s")


def _epoch(stamp: str) -> float:
    """A record's ISO time (UTC, "Z") as seconds since the epoch, like the folds' own started_at/finished_at."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()  # Python 3.10 does not read "Z"


def _one_run(workers: int, runs_dir: Path, spec: str) -> dict:
    """One `make run-cluster` with this many workers into an empty runs folder; its figures, from its records."""
    env = clean_env(CLUSTER_WORKERS=workers, RUNS_DIR=runs_dir, SPEC=spec)
    started = time.perf_counter()
    done = subprocess.run(["make", "run-cluster"], cwd=ROOT, env=env, capture_output=True, text=True)
    make_s = time.perf_counter() - started
    output = done.stdout + done.stderr
    if done.returncode != 0:
        last = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["no output"]
        return {"failed": f"make run-cluster with CLUSTER_WORKERS={workers} failed: {last[0].strip()[:300]}"}
    sweep_dir = runs_dir / "cluster" / sweep_spec.load(ROOT / spec).name
    book = json.loads((sweep_dir / "sweep.json").read_text())
    folds = [f for m in book["members"] for f in m["folds"]]
    spread: dict[str, int] = {}
    for fold in folds:
        spread[fold.get("node_ip") or "?"] = spread.get(fold.get("node_ip") or "?", 0) + 1
    compute = [f["fit_s"] + f["predict_s"] for p in sweep_dir.glob("*/*/run.json")
               for f in json.loads(p.read_text())["timings"]["folds"]]
    alive = ALIVE.search(output)
    sweep_started = _epoch(book["started_at"])
    first = min(f["started_at"] for f in folds)  # the workers' clocks: the host's, as every container's is
    last = max(f["finished_at"] for f in folds)
    return {"workers": workers, "status": book["status"], "members": len(book["members"]),
            "reused": sum(bool(m.get("reused")) for m in book["members"]), "folds": len(folds),
            "sweep_s": round(_epoch(book["ended_at"]) - sweep_started, 3),
            "before_folds_s": round(first - sweep_started, 3), "fold_span_s": round(last - first, 3),
            "nodes_alive": book["engine"].get("nodes"), "task_slots": book["engine"].get("workers"),
            "task_cpus": book["engine"].get("resources", {}).get("CPU"),
            "fold_nodes": len({f.get("node_id") for f in folds}), "folds_per_node": dict(sorted(spread.items())),
            "fold_compute_s": round(statistics.median(compute), 3) if compute else None,
            "cluster_start_s": float(alive.group(2)) if alive else None, "make_s": round(make_s, 1)}


def cluster_scaling(tmp: Path, log, repeats: int = 2, spec: str = SPEC) -> dict:
    if not shutil.which("docker") or subprocess.run(["docker", "version"], capture_output=True).returncode != 0:
        return {"measured": False, "why": "no Docker engine answers `docker version` on this machine: the compose "
                                          "cluster cannot start"}
    repeats = max(1, repeats)
    runs: dict[int, list[dict]] = {w: [] for w in WORKER_COUNTS}
    order = []
    for repeat in range(repeats):
        for workers in (WORKER_COUNTS if repeat % 2 == 0 else WORKER_COUNTS[::-1]):
            run = _one_run(workers, tmp / "cluster-scaling" / f"workers{workers}-repeat{repeat}", spec)
            if "failed" in run:
                return {"measured": False, "why": run["failed"]}
            if run["status"] != "complete" or run["reused"]:
                return {"measured": False, "why": f"a {workers}-worker sweep ended {run['status']!r} with "
                                                  f"{run['reused']} members reused: not a clean sample"}
            runs[workers].append(run)
            order.append(workers)
            log(f"cluster scaling repeat {repeat + 1}/{repeats}, {workers} worker(s): {run['members']} members in "
                f"{run['sweep_s']:.1f}s, folds on {run['fold_nodes']} node(s), cluster up in {run['cluster_start_s']}s")
    sweep_s = {w: [r["sweep_s"] for r in rs] for w, rs in runs.items()}
    members = runs[1][0]["members"]
    s = speed_up(sweep_s[1], sweep_s[2])  # > 1: two workers finish the same members sooner
    span = speed_up(*([r["fold_span_s"] for r in runs[w]] for w in WORKER_COUNTS))  # the folds alone
    per_key = lambda field: {str(w): [r[field] for r in rs] for w, rs in runs.items()}  # noqa: E731
    return {
        "measured": True, "spec": spec, "members": members, "folds_per_sweep": runs[1][0]["folds"],
        "repeats": repeats, "order": order, "cpus_per_worker": 1,
        "sweep_s": {str(w): v for w, v in sweep_s.items()},
        "members_per_hour": {str(w): [round(3600 * members / t, 1) for t in v] for w, v in sweep_s.items()},
        "ratio_2_over_1": round(s.ratio, 4),
        "interval_95": [round(s.low, 4), round(s.high, 4)] if s.low else None, "significant": s.significant,
        "folds_only_ratio_2_over_1": round(span.ratio, 4),
        "before_folds_s": per_key("before_folds_s"), "fold_span_s": per_key("fold_span_s"),
        "fold_nodes": per_key("fold_nodes"), "nodes_alive": per_key("nodes_alive"),
        "folds_per_node": per_key("folds_per_node"), "fold_compute_s": per_key("fold_compute_s"),
        "cluster_start_s": per_key("cluster_start_s"), "make_s": per_key("make_s"),
        "ceiling": 2.0,
    }


def render(c: dict) -> list[str]:
    out = ["", "## 6b. Cluster scaling: 1 vs 2 workers in the compose Ray cluster", ""]
    if not c.get("measured"):
        return [*out, f"- not measured: {c.get('why', 'skipped')}"]
    median = lambda values: statistics.median(values)  # noqa: E731
    interval = f" [{c['interval_95'][0]}, {c['interval_95'][1]}]" if c.get("interval_95") else ""
    out += [f"- `make run-cluster` with `CLUSTER_WORKERS=1` and `=2`, {c['spec']} ({c['members']} members, "
            f"{c['folds_per_sweep']} folds), {c['repeats']} alternating repeats each (order {c['order']}), a fresh "
            f"runs folder each time; each worker {c['cpus_per_worker']} CPU, one fold at a time",
            "",
            "| workers | sweep s (each run) | members per hour | of which before the first fold s | first fold start "
            "to last fold end s | fold nodes | folds per node | median fold fit+predict s | cluster start s | whole make s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for w in ("1", "2"):
        out.append(f"| {w} | {', '.join(f'{t:.1f}' for t in c['sweep_s'][w])} "
                   f"| {', '.join(f'{m:.0f}' for m in c['members_per_hour'][w])} "
                   f"| {', '.join(f'{x:.1f}' for x in c['before_folds_s'][w])} "
                   f"| {', '.join(f'{x:.1f}' for x in c['fold_span_s'][w])} "
                   f"| {', '.join(map(str, c['fold_nodes'][w]))} "
                   f"| {'; '.join(', '.join(f'{ip}: {n}' for ip, n in spread.items()) for spread in c['folds_per_node'][w])} "
                   f"| {median([x for x in c['fold_compute_s'][w] if x is not None]):.2f} "
                   f"| {', '.join(str(x) for x in c['cluster_start_s'][w])} "
                   f"| {', '.join(f'{x:.0f}' for x in c['make_s'][w])} |")
    out += ["", f"- members per hour, 2 workers / 1 worker: **{c['ratio_2_over_1']}**{interval}"
                + ("" if c.get("significant") else " (not significant)")
                + f" (ceiling {c['ceiling']}x: one CPU per worker, two cores here)",
            f"- the folds alone (first fold start to last fold end), 1 worker / 2 workers: {c['folds_only_ratio_2_over_1']}",
            "- the cluster's start (until every node is alive) and the whole make are not in the members per hour"]
    return out
