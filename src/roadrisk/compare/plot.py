"""The picture: where each environment spends its time, and its accuracy against the floor."""

from __future__ import annotations

import io

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


def png_bytes(fig) -> bytes:
    """A finished matplotlib figure as PNG bytes (written atomically by the caller), then closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
