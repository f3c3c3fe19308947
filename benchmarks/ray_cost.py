"""Section 6 of ``make bench``: what Ray costs, and what sharing a GPU between folds buys.

``ray_cost``: the same member list (a small hgb grid on the quick data) trained by ``roadrisk sweep``
inline and on a local Ray, alternated, repeated: members per hour on each side with an interval, and
Ray's per-task overhead (what a Ray fold costs beyond its fit and predict: scheduling, moving the
result, the worker's start) as a fraction of a fold. Ray runs with ``--cpus-per-task`` equal to the
CPUs here, so both sides train one fold at a time with the same threads and the difference is Ray.

``gpu_share``: on a CUDA machine, TabM folds per hour with ``--gpus-per-task`` 1, 0.5 and 0.25 (goal:
>= 2.5x the throughput of 1.0 at 0.25). Without CUDA: "not measured", never estimated.
"""

from __future__ import annotations

import json
import statistics
import textwrap
import time
from pathlib import Path

from roadrisk import environment
from roadrisk.compare.stats import speed_up

GOAL_RAY_OVER_INLINE = 1.10
GOAL_GPU_SHARE = 2.5

MEMBERS = """
    name = "{name}"
    cv_seed = 42
    [data]
    profile = "{profile}"
    [[model]]
    name = "hgb"
    seeds = [1]
    params = {{ max_leaf_nodes = [7, 11, 15, 23] }}
"""


def _sweep(spec: Path, runs: Path, executor: str, **kw) -> tuple[float, dict]:
    from bare import silenced

    from roadrisk.executors import ExecutorConfig
    from roadrisk.sweep.runner import run_sweep

    start = time.perf_counter()
    with silenced():
        code = run_sweep(spec, runs, ExecutorConfig(executor, **kw), echo=lambda line: None)
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"bench: sweep on {executor} failed ({runs})")
    return wall, json.loads((runs / spec.stem / "sweep.json").read_text())


def _fold_compute(runs: Path) -> dict[tuple[str, int], float]:
    """fit + predict of every fold the sweep trained (the work both sides share), by (member, fold)."""
    out = {}
    for path in runs.glob("*/*/*/run.json"):
        record = json.loads(path.read_text())
        for f in record["timings"]["folds"]:
            out[(record["label"], f["fold"])] = f["fit_s"] + f["predict_s"]
    return out


def ray_cost(tmp: Path, log, repeats: int = 3, profile: str = "quick") -> dict:
    try:
        import ray
    except ImportError:
        return {"measured": False, "why": "Ray is not installed (pip install 'roadrisk[ray]')"}

    cpus = environment.usable_cpus()[0]
    started = time.perf_counter()  # a running Ray is reused by every sweep: its start is counted once, apart
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    startup_s = time.perf_counter() - started
    from roadrisk.executors.ray import RayExecutor

    started = time.perf_counter()  # what every sweep pays once on a running Ray: the epoch relay's worker
    probe = RayExecutor(cpus_per_task=cpus)
    ray.get(probe._relay.drain.remote())
    executor_start_s = time.perf_counter() - started
    walls: dict[str, list[float]] = {"inline": [], "ray": []}
    overhead_per_task: list[float] = []
    gaps: list[float] = []  # from one Ray fold's end to the next one's start (one fold at a time)
    compute: dict[str, dict] = {"inline": {}, "ray": {}}  # fit + predict by (member, fold), per side
    members = folds = 0
    for repeat in range(repeats):
        for executor in (("inline", "ray") if repeat % 2 == 0 else ("ray", "inline")):
            name = f"bench-{executor}-{repeat}"
            spec = tmp / f"{name}.toml"
            spec.write_text(textwrap.dedent(MEMBERS.format(name=name, profile=profile)))
            runs = tmp / "ray-cost" / executor / str(repeat)
            wall, book = _sweep(spec, runs, executor, cpus_per_task=cpus if executor == "ray" else None)
            walls[executor].append(wall)
            members = len(book["members"])
            computes = _fold_compute(runs)
            folds = len(computes)
            for key, seconds in computes.items():
                compute[executor].setdefault(key, []).append(seconds)
            if executor == "ray":
                # Inside the worker, beyond fit+predict (unpickling the features, the library's import); the
                # driver's part (scheduling, moving results) is in the wall-time difference.
                overhead_per_task += [f["finished_at"] - f["started_at"] - computes[(m["id"], f["fold"])]
                                      for m in book["members"] for f in m["folds"]]
                spans = sorted((f["started_at"], f["finished_at"]) for m in book["members"] for f in m["folds"])
                gaps += [nxt[0] - prev[1] for prev, nxt in zip(spans, spans[1:])]
            log(f"ray cost repeat {repeat + 1}/{repeats} {executor}: {wall:.1f}s for {members} members")
    ray.shutdown()
    per_hour = {k: [round(3600 * members / w, 1) for w in v] for k, v in walls.items()}
    s = speed_up(walls["ray"], walls["inline"])  # > 1: Ray takes longer than inline
    ratio = statistics.median(walls["ray"]) / statistics.median(walls["inline"])
    extra_per_task = (statistics.median(walls["ray"]) - statistics.median(walls["inline"])) / max(1, folds)
    per_task_after_start = extra_per_task - executor_start_s / max(1, folds)
    mean_fold = statistics.median(_fold_compute(tmp / "ray-cost" / "inline" / "0").values())
    return {"measured": True, "profile": profile, "members": members, "folds_per_sweep": folds, "repeats": repeats,
            "cpus": cpus,
            "wall_s": walls, "members_per_hour": per_hour, "ratio_ray_over_inline": round(ratio, 4),
            "interval_95": [round(s.low, 4), round(s.high, 4)] if s.low else None, "significant": s.significant,
            "extra_s_per_task": round(extra_per_task, 3), "fold_s": round(mean_fold, 3),
            "overhead_fraction_of_fold": round(extra_per_task / mean_fold, 4),
            "in_worker_overhead_s": round(statistics.median(overhead_per_task), 3) if overhead_per_task else None,
            "scheduling_gap_s": round(statistics.median(gaps), 4) if gaps else None,
            # The same fold's fit + predict in a Ray worker against inline: Ray's own processes (GCS,
            # raylet, agents) share the CPUs with the fit.
            "compute_ray_over_inline": round(statistics.median(
                statistics.median(compute["ray"][k]) / statistics.median(v) for k, v in compute["inline"].items()
                if k in compute["ray"]), 4),
            "ray_startup_s": round(startup_s, 2), "executor_start_s": round(executor_start_s, 3),
            "extra_s_per_task_after_start": round(per_task_after_start, 3),
            "overhead_fraction_after_start": round(per_task_after_start / mean_fold, 4),
            "goal": GOAL_RAY_OVER_INLINE, "meets_goal": ratio <= GOAL_RAY_OVER_INLINE}


def gpu_share(tmp: Path, log, fractions=(1.0, 0.5, 0.25), members: int = 4, allowed: bool = True) -> dict:
    facts = environment.collect()
    if not allowed or not facts.get("cuda_available"):
        return {"measured": False, "why": "no CUDA device on this machine: fractional GPUs need one "
                                          "(benchmarks/gpu-check.sh on a GPU box measures this)"}
    spec_text = f"""
        name = "{{name}}"
        [data]
        profile = "full"
        [defaults]
        recipe = "fast"
        device = "cuda"
        [[model]]
        name = "tabm"
        seeds = {list(range(1, members + 1))}
    """
    out = []
    for fraction in fractions:
        name = f"gpu-share-{str(fraction).replace('.', '')}"
        spec = tmp / f"{name}.toml"
        spec.write_text(textwrap.dedent(spec_text.format(name=name)))
        wall, book = _sweep(spec, tmp / "gpu-share", "ray", gpus_per_task=fraction, cpus_per_task=1)
        folds = sum(len(m["folds"]) for m in book["members"])
        out.append({"gpus_per_task": fraction, "wall_s": round(wall, 1), "folds": folds,
                    "folds_per_hour": round(3600 * folds / wall, 1)})
        log(f"gpu share {fraction}: {folds} folds in {wall:.0f}s")
    base = out[0]["folds_per_hour"]
    for row in out:
        row["throughput_vs_whole_gpu"] = round(row["folds_per_hour"] / base, 3)
    return {"measured": True, "gpu": facts.get("gpu_name"), "rows": out, "goal": GOAL_GPU_SHARE,
            "meets_goal": out[-1]["throughput_vs_whole_gpu"] >= GOAL_GPU_SHARE}


def render(cost: dict, share: dict) -> list[str]:
    out = ["", "## 6. Ray: its cost on this machine, and GPU sharing", ""]
    if cost.get("measured"):
        interval = f" [{cost['interval_95'][0]}, {cost['interval_95'][1]}]" if cost.get("interval_95") else ""
        out += [f"- {cost['members']} hgb members ({cost['folds_per_sweep']} {cost['profile']} folds) per sweep, "
                f"{cost['repeats']} alternating repeats, Ray local with {cost['cpus']} CPUs per task "
                "(one fold at a time, like inline)",
                f"- members per hour: inline {cost['members_per_hour']['inline']}, Ray {cost['members_per_hour']['ray']}",
                f"- wall time Ray / inline: **{cost['ratio_ray_over_inline']}**{interval}"
                + ("" if cost.get("significant") else " (not significant)")
                + f" (goal ≤ {cost['goal']}: {'met' if cost['meets_goal'] else 'NOT met'})",
                f"- Ray's extra time per task: {cost['extra_s_per_task']} s, {100 * cost['overhead_fraction_of_fold']:.1f}% "
                f"of a {cost['fold_s']} s fold. Of it: the gap between one Ray fold's end and the next one's start "
                f"{cost['scheduling_gap_s']} s; inside the worker beyond fit+predict {cost['in_worker_overhead_s']} s; "
                f"the same fold's fit+predict in a Ray worker vs inline **{cost['compute_ray_over_inline']}x** "
                "(Ray's own processes share the CPUs)",
                f"- of the extra time, {cost['executor_start_s']} s a sweep is the executor's start on a running Ray (its "
                f"epoch relay's worker); the rest, per task: {cost['extra_s_per_task_after_start']} s, "
                f"{100 * cost['overhead_fraction_after_start']:.1f}% of a fold",
                f"- starting a local Ray (once per sweep; not in the figures above): {cost['ray_startup_s']} s"]
    else:
        out.append(f"- Ray cost not measured: {cost.get('why', 'skipped')}")
    if share.get("measured"):
        out += ["", f"GPU sharing on {share['gpu']} (TabM, fast recipe, full data):", "",
                "| gpus per task | folds | wall s | folds per hour | vs a whole GPU |", "|---|---|---|---|---|"]
        for r in share["rows"]:
            out.append(f"| {r['gpus_per_task']} | {r['folds']} | {r['wall_s']} | {r['folds_per_hour']} "
                       f"| {r['throughput_vs_whole_gpu']}x |")
        out.append(f"- goal: ≥ {share['goal']}x at 0.25: {'met' if share['meets_goal'] else 'NOT met'}")
    else:
        out.append(f"- GPU sharing not measured: {share.get('why', 'skipped')}")
    return out
