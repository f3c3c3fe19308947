"""The pictures: where each environment spends its time and its accuracy against the floor (compare.png);
what each result cost against how good it is (leaderboard.png)."""

from __future__ import annotations

import io
import math

PHASES = (("setup (imports, device)", "#d9d9d9"), ("data (generate, load, features)", "#9ecae1"),
          ("fit (all folds)", "#3182bd"), ("predict (all folds)", "#fd8d3c"), ("other (writing outputs)", "#f0f0f0"))


def render_png(result: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    runs = [r for r in result["runs"] if r["timings"]["total_s"]]
    names = [f"{r['label']}\n{r['device']}" + (" (baseline)" if r["baseline"] else "") for r in runs]
    fig, (ax_time, ax_rmse) = plt.subplots(1, 2, figsize=(12, 2.4 + 0.75 * max(len(runs), 2)),
                                           gridspec_kw={"width_ratios": [3, 2]})
    y = list(range(len(runs)))[::-1]
    for i, run in zip(y, runs):
        t = run["timings"]
        setup = t.get("setup_s") or 0
        load = (t.get("generate_s") or 0) + (t["load_s"] or 0) + (t["features_s"] or 0)
        fit = t["fit_per_run_s"]
        predict = t["predict_per_run_s"]
        other = max(0.0, t["total_s"] - setup - load - fit - predict)
        left = 0.0
        for (phase, colour), width in zip(PHASES, (setup, load, fit, predict, other)):
            ax_time.barh(i, width, left=left, color=colour, edgecolor="white", label=phase if i == y[0] else None)
            left += width
        note = f"{t['total_s']:.1f}s"
        if run["speed_up"]:
            s = run["speed_up"]
            note += f"  {s['ratio']:.2f}x" + ("" if s["significant"] or s["low"] is None else " (n.s.)")
        ax_time.text(left, i, "  " + note, va="center", fontsize=9)
    ax_time.set_yticks(y, names)
    ax_time.set_xlabel("seconds")
    ax_time.set_title("Time by phase (speed-up vs baseline per fold; n.s. = inside the noise)", fontsize=10)
    ax_time.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8, frameon=False)
    ax_time.set_xlim(0, max(r["timings"]["total_s"] for r in runs) * 1.35)
    ax_time.spines[["top", "right"]].set_visible(False)

    rmses = [r["oof_rmse"] for r in runs]
    colours = ["#31a354" if r["status"] == "complete" else "#bdbdbd" for r in runs]
    ax_rmse.barh(y, [v or 0 for v in rmses], color=colours)
    floors = [r["floor_rmse"] for r in runs if r["floor_rmse"]]
    values = [v for v in rmses if v] + floors
    if values:
        low, high = min(values), max(values)
        pad = max((high - low) * 0.6, high * 0.002)
        ax_rmse.set_xlim(low - pad, high + pad)
    if floors:
        ax_rmse.axvline(min(floors), color="black", linestyle="--", linewidth=1, label="floor (best possible)")
        ax_rmse.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, frameon=False)
    for i, run in zip(y, runs):
        if run["oof_rmse"]:
            gap = "" if run["gap_to_floor_pct"] is None else f"  +{run['gap_to_floor_pct']:.2f}%"
            ax_rmse.text(run["oof_rmse"], i, f" {run['oof_rmse']:.5f}{gap}", va="center", fontsize=9)
    ax_rmse.set_yticks(y, [""] * len(y))
    ax_rmse.xaxis.set_major_locator(MaxNLocator(4))
    ax_rmse.set_xlabel("OOF RMSE (lower is better)")
    ax_rmse.set_title("Accuracy", fontsize=10)
    ax_rmse.spines[["top", "right"]].set_visible(False)
    return png_bytes(fig)


def render_leaderboard_png(rows: list[dict]) -> bytes:
    """RMSE against compute time (log scale): training runs by model, ensembles as their in-sample
    score joined to their nested one, the floor of #1's data as a line; runs not comparable to #1 faded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(10, 6))
    drawn = [r for r in rows if r["score"] is not None and r["compute_s"] and r["compute_s"] > 0]
    models = sorted({r["model"] for r in drawn if r["kind"] != "ensemble"})
    colours = {model: plt.get_cmap("tab10")(i % 10) for i, model in enumerate(models)}
    labels: dict[tuple, list[str]] = {}
    for r in drawn:
        alpha = 1.0 if r["comparable"] else 0.35
        x = r["compute_s"]
        if r["kind"] == "ensemble":
            if r["oof_rmse"] is not None and r["nested_oof_rmse"] is not None:
                ax.plot([x, x], [r["oof_rmse"], r["nested_oof_rmse"]], color="#636363", linewidth=1, alpha=alpha)
                ax.scatter([x], [r["oof_rmse"]], marker="s", s=40, facecolors="none", edgecolors="#d62728", alpha=alpha)
            ax.scatter([x], [r["score"]], marker="*", s=160, color="#d62728", alpha=alpha, zorder=3)
        else:
            ax.scatter([x], [r["score"]], marker="o", s=45, color=colours[r["model"]], alpha=alpha, zorder=3)
        name = r["name"] if len(r["name"]) <= 28 else r["name"][:27] + "…"
        labels.setdefault((round(math.log10(x), 3), round(r["score"], 7)), []).append(f"#{r['rank']} {name}")
    for (log_x, score), names in labels.items():  # runs on one spot (blends of the same members) share one label
        ax.annotate(", ".join(names), (10**log_x, score), xytext=(5, 3), textcoords="offset points", fontsize=8)
    reference = next((r for r in rows if r["reference"]), None)
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[m], label=f"training run: {m}") for m in models]
    if any(r["kind"] == "ensemble" for r in drawn):
        handles += [Line2D([], [], marker="*", markersize=12, linestyle="", color="#d62728",
                           label="ensemble, nested RMSE (honest)"),
                    Line2D([], [], marker="s", linestyle="", markerfacecolor="none", color="#d62728",
                           label="ensemble, in-sample OOF RMSE")]
    if reference and reference["floor_rmse"]:
        ax.axhline(reference["floor_rmse"], color="black", linestyle="--", linewidth=1)
        handles.append(Line2D([], [], color="black", linestyle="--", label=f"floor {reference['floor_rmse']:.6f}"))
    if drawn:
        xs = [r["compute_s"] for r in drawn]
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.6, max(xs) * 2.5)  # room on the right for the names
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # seconds, not 10^x
        ax.xaxis.set_minor_formatter(NullFormatter())
        ys = [v for r in drawn for v in (r["score"], r["oof_rmse"]) if v is not None]
        ys += [reference["floor_rmse"]] if reference and reference["floor_rmse"] else []
        pad = max((max(ys) - min(ys)) * 0.12, max(ys) * 0.0005)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    else:
        ax.text(0.5, 0.5, "no run has both an RMSE and a compute time", ha="center", va="center", transform=ax.transAxes)
    left_out = len(rows) - len(drawn)
    ax.set_xlabel("compute time, seconds (log scale; an ensemble's includes its members')"
                  + (f"; {left_out} run(s) without an RMSE or time not drawn" if left_out else ""))
    ax.set_ylabel("RMSE (lower is better): OOF, nested for ensembles")
    ax.set_title("Leaderboard: accuracy against compute" + ("; faded = not comparable to #1"
                                                             if any(not r["comparable"] for r in drawn) else ""),
                 fontsize=10)
    if handles:
        ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.8)
    ax.grid(True, which="major", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return png_bytes(fig)


def png_bytes(fig) -> bytes:
    """A finished matplotlib figure as PNG bytes (written atomically by the caller), then closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
