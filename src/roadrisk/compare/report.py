"""The comparison as a person reads it (markdown, also printed) and as a program reads it (JSON)."""

from __future__ import annotations

from datetime import datetime, timezone

from .stats import SpeedUp

HOW_SPEED_UP = (
    "Speed-up = how many times faster than the baseline per fold (fit + predict), from the geometric "
    "means of the per-fold times; the 95% interval is Welch's t on the log-times of the two runs' folds "
    "(with --pool: on each pooled run's geometric-mean fold time, which also captures run-to-run noise). "
    "An interval that contains 1.00 is inside the noise: marked *not significant*, never a win."
)

HOW_LEADERBOARD = (
    "Every complete run, best first, ranked by its honest RMSE: a training run's OOF RMSE (each row predicted "
    "by a model that never saw it); an ensemble's **nested** OOF RMSE (weights fitted on the other folds), "
    "since its in-sample OOF RMSE was fitted on the very rows it scores. Gap to floor is of that figure. "
    "Compute: a training run's wall time; an ensemble's members' wall times summed plus its own. A run on "
    "other data, folds or cv_seed than #1 scored other rows: marked, and not to be ranked against it."
)


def _num(value, fmt: str = ".2f", none: str = "–") -> str:
    return none if value is None else format(value, fmt)


def _spread(spread: dict) -> str:
    if spread["median"] is None:
        return "–"
    return f"{spread['median']:.2f} [{spread['min']:.2f}–{spread['max']:.2f}]"


def _compute(row: dict) -> str:
    if row["compute_s"] is None:
        return "–"
    if row["kind"] != "ensemble":
        return f"{row['compute_s']:.1f}"
    untimed = row["members_without_timing"]
    return (f"{'≥' if untimed else ''}{row['compute_s']:.1f} (members {_num(row['members_compute_s'], '.1f')}"
            f" + blend {_num(row['own_s'], '.1f')}" + (f"; {untimed} member(s) untimed" if untimed else "") + ")")


def _comparable(row: dict) -> str:
    if row["reference"]:
        return "#1 (reference)"
    if row["comparable"]:
        return "yes"
    return "**no**: " + "; ".join(row["not_comparable_because"])


def leaderboard_lines(rows: list[dict]) -> list[str]:
    out = ["## Leaderboard", "", HOW_LEADERBOARD, "",
           "| rank | run | kind | model | recipe | OOF RMSE | nested OOF RMSE | gap to floor | compute s | comparable to #1 |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap = "–" if r["gap_to_floor_pct"] is None else f"{r['gap_to_floor_pct']:+.2f}%"
        out.append(f"| {r['rank'] or '–'} | {r['name']} | {r['kind']} | {r['model']} | {r['recipe'] or '–'} "
                   f"| {_num(r['oof_rmse'], '.6f')} | {_num(r['nested_oof_rmse'], '.6f')} | {gap} | {_compute(r)} "
                   f"| {_comparable(r)} |")
    return out + ["", "![RMSE against compute time](leaderboard.png)"]


def markdown(result: dict, messages: list[str]) -> str:
    runs = result["runs"]
    names = [r["name"] for r in runs]
    board, ensembles = result.get("leaderboard", []), result.get("ensembles", [])
    best = next((r for r in board if r["rank"] == 1), None)
    out = ["# roadrisk compare", "",
           f"generated_at: {datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}",
           f"baseline: {result['baseline']}", f"runs: {len(runs)}", f"ensembles: {len(ensembles)}",
           "best: " + (f"{best['name']} ({best['score_kind']} {best['score']:.6f})" if best else "–"), ""]
    out += leaderboard_lines(board) + [""]
    out += ["## Runs", "", "| run | run id | runs pooled | status | device | profile | model | recipe | folds | cv seed "
            "| data | commit |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        status = r["status"] + (" (baseline)" if r["baseline"] else "")
        out.append(f"| {r['name']} | {r['run_id']} | {r['timings']['runs']} | {status} | {r['device']} | {r['profile']} "
                   f"| {r['model']} | {r['recipe']} | {r['folds']} | {r['cv_seed']} "
                   f"| {r['source']} {r['fingerprint']} | {(r['commit'] or '–')[:10]} |")
    for r in runs:
        if r["status"] != "complete":
            out.append(f"\n> {r['name']} is **{r['status']}**: {r['error'] or 'no reason recorded'}. "
                       "It is shown, but never used as a baseline or for a speed-up.")
    if ensembles:
        out.append(f"\n> Left out of the sections below, in the Leaderboard only: {', '.join(ensembles)} (an ensemble "
                   "has no environment block or fold timings of its own, and is never a baseline).")

    out += ["", "## 1. Device log diff", "",
            "`≠` marks a line that differs between runs: the answer to *why did this environment not get my GPU*.",
            "", "| | key | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for row in result["device_diff"]:
        if row["sentence"]:
            continue
        mark = "≠" if row["differs"] else ""
        out.append(f"| {mark} | {row['key']} | " + " | ".join(str(v) for v in row["values"]) + " |")
    out.append("")
    for row in result["device_diff"]:
        if not row["sentence"]:
            continue
        if not row["differs"]:
            out.append(f"- {row['key']} (all runs): {row['values'][0]}")
            continue
        for name, value in zip(names, row["values"]):
            out.append(f"- ≠ {row['key']} · **{name}**: {value}")

    out += ["", "## 2. Timings (seconds)", "", HOW_SPEED_UP, "",
            "| run | load | features | fit per fold, median [min–max] | predict per fold | total | speed-up vs baseline |",
            "|---|---|---|---|---|---|---|"]
    for r in runs:
        t = r["timings"]
        if r["baseline"]:
            speed = "baseline"
        elif r["speed_up"]:
            s = SpeedUp(**{k: v for k, v in r["speed_up"].items() if k != "samples"})
            speed = s.text().replace("not significant", "*not significant*")
            if r["total_ratio"]:
                speed += f"; total {r['total_ratio']:.2f}x"
        elif r["status"] != "complete":
            speed = f"– ({r['status']})"
        elif not r["comparable"]:
            speed = "– (not comparable)"
        else:
            speed = "–"
        out.append(f"| {r['name']} | {_num(t['load_s'])} | {_num(t['features_s'])} | {_spread(t['fit'])} "
                   f"| {_spread(t['predict'])} | {_num(t['total_s'], '.1f')} | {speed} |")

    out += ["", "## 3. Accuracy", "",
            "Δ = OOF RMSE minus the baseline's. Prediction disagreement compares each row's prediction with the "
            "baseline's (same data, folds and seed only): CPU, GPU and container runs of one seed need not be "
            "bit-identical.", "",
            "| run | OOF RMSE | Δ vs baseline | floor | gap to floor | OOF max \\|Δpred\\| | OOF RMS Δpred "
            "| test max \\|Δpred\\| |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        d = r["disagreement"]
        gap = "–" if r["gap_to_floor_pct"] is None else f"+{r['gap_to_floor_pct']:.2f}%"
        delta = "baseline" if r["baseline"] else _num(r["rmse_delta"], "+.6f")
        if d:
            dis = [("identical" if d["oof_identical"] else f"{d['oof_max_abs']:.2e}"), f"{d['oof_rms']:.2e}",
                   ("identical" if d["test_identical"] else f"{d['test_max_abs']:.2e}")]
        else:
            dis = ["–"] * 3
        out.append(f"| {r['name']} | {_num(r['oof_rmse'], '.6f')} | {delta} | {_num(r['floor_rmse'], '.6f')} "
                   f"| {gap} | " + " | ".join(dis) + " |")

    out += ["", "## 4. Comparability", ""]
    for r in runs:
        if r["baseline"]:
            out.append(f"- {r['name']}: the baseline")
        elif r["comparable"]:
            out.append(f"- {r['name']}: comparable (same data, profile, model, folds, seed)")
        else:
            kept = "kept in the speed-up column (--force)" if result["force"] else "kept out of the speed-up column"
            out.append(f"- {r['name']}: **not comparable**: {'; '.join(r['not_comparable_because'])}; {kept}")
    if messages:
        out += ["", "## Messages", ""] + [f"- {m}" for m in messages]
    out += ["", "![timings and accuracy](compare.png)", ""]
    return "\n".join(out)


def probe_section(probe_result: dict | None) -> str:
    """The newest ``roadrisk doctor --probe`` record beside the runs (runs/probe/), when there is one."""
    if not probe_result:
        return ""
    from ..probe import table_lines

    return "\n".join(["", f"## 5. Should this machine use its GPU? (doctor --probe, {probe_result['generated_at']})", "",
                      *table_lines(probe_result), ""])


def as_json(result: dict, messages: list[str]) -> dict:
    return {"schema_version": 1, "generated_at": datetime.now(timezone.utc).isoformat(), **result,
            "messages": messages}
