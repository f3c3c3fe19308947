"""The bench picture (reports/bench.png): every ratio against its goal, and how fit time grows with rows.

Left: one bar per ratio (ours / the baseline), a whisker for its 95 % interval where it has one, the
goal as a red tick; 1.0 (no cost at all) as a dashed line. Right: fit seconds against rows on log
axes, one line per model, labelled with the fitted exponent.
"""

from __future__ import annotations

import statistics

from roadrisk.compare.plot import png_bytes


def _ratio_rows(result: dict) -> list[tuple[str, float, tuple[float, float] | None, float | None]]:
    """(label, ratio, interval or None, goal or None), top to bottom."""
    rows = []
    for r in result.get("overhead") or []:
        paired = r.get("paired_ratios") or []
        rows.append((f"overhead {r['model']} {r.get('profile', 'quick')} ({r['rows']:,} rows)", r["ratio"],
                     (paired[0], paired[-1]) if len(paired) > 1 else None, r["goal"]))
    for r in result.get("process_overhead") or []:
        paired = r["paired_ratios"]
        rows.append((f"whole process {r['model']} {r['profile']}", r["ratio"],
                     (paired[0], paired[-1]) if len(paired) > 1 else None, None))
    c = result.get("container_tax") or {}
    if c.get("measured"):
        rows.append(("container tax (per fold)", c["ratio_docker_over_native"],
                     tuple(c["interval_95"]) if c.get("interval_95") else None, c["goal"]))
        p = c.get("compute_probe") or {}
        if p.get("measured"):
            rows.append(("container, pure torch loop", p["ratio"],
                         tuple(p["interval_95"]) if p.get("interval_95") else None, c["goal"]))
    return rows


def render_png(result: dict) -> bytes | None:
    """The picture as PNG bytes; None when no section with figures ran."""
    rows = _ratio_rows(result)
    scaling = (result.get("scaling") or {}).get("rows") or []
    if not rows and not scaling:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ratio, ax_scale) = plt.subplots(1, 2, figsize=(13, 1.6 + 0.45 * max(len(rows), 5)),
                                             gridspec_kw={"width_ratios": [3, 2]})
    y = list(range(len(rows)))[::-1]
    for i, (_label, ratio, interval, goal) in zip(y, rows):
        colour = "#31a354" if goal is None or ratio <= goal else "#de2d26"
        ax_ratio.barh(i, ratio, color=colour, alpha=0.8)
        if interval:
            ax_ratio.plot(interval, [i, i], color="black", linewidth=1.2)
        if goal:
            ax_ratio.plot([goal, goal], [i - 0.4, i + 0.4], color="#de2d26", linewidth=2)
        ax_ratio.text(max(ratio, interval[1] if interval else ratio) + 0.01, i, f" {ratio:.3f}", va="center", fontsize=9)
    ax_ratio.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax_ratio.set_yticks(y, [r[0] for r in rows])
    highs = [max(r[1], r[2][1] if r[2] else r[1]) for r in rows] or [1.2]
    ax_ratio.set_xlim(0.5, max(1.2, max(highs) * 1.12))
    ax_ratio.set_xlabel("ratio: ours / baseline (lower is better; 1.0 = no cost)")
    ax_ratio.set_title("Ratios (bar), spread or 95% interval (line), goal (red tick)", fontsize=10)
    ax_ratio.spines[["top", "right"]].set_visible(False)

    exponents = (result.get("scaling") or {}).get("fit_time_exponent") or {}
    for model, colour in (("hgb", "#3182bd"), ("realmlp", "#fd8d3c")):
        points = sorted((r["rows"], r["fit_s"]) for r in scaling if r["model"] == model)
        if points:
            k = exponents.get(model)
            ax_scale.plot(*zip(*points), marker="o", color=colour,
                          label=f"{model}: fit ∝ rows^{k:.2f}" if k is not None else model)
    if scaling:
        ax_scale.set_xscale("log")
        ax_scale.set_yscale("log")
        ax_scale.legend(fontsize=9, frameon=False)
        median_total = statistics.median(r["total_s"] for r in scaling)
        ax_scale.set_title(f"Fit time vs rows on this CPU (2 folds; median run {median_total:.0f} s)", fontsize=10)
    else:
        ax_scale.set_title("scaling: skipped", fontsize=10)
    ax_scale.set_xlabel("train rows")
    ax_scale.set_ylabel("fit seconds (all folds)")
    ax_scale.spines[["top", "right"]].set_visible(False)
    return png_bytes(fig)
