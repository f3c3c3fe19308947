"""Speed-up ratios with an uncertainty taken from the per-fold spread.

A fold is the unit of work every run repeats, so its times are the samples. Timings are compared
on the log scale (ratios are multiplicative and times are skewed): the speed-up of run B over a
baseline A is exp(mean log t_A − mean log t_B), and its 95% interval uses Welch's t on the two sets
of log-times. When the interval contains 1 the difference is inside the noise and is reported as
not significant. With a single fold per run there is no spread, so no interval is claimed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class SpeedUp:
    ratio: float  # > 1: faster than the baseline
    low: float | None  # 95% interval; None when it cannot be estimated
    high: float | None
    significant: bool
    n_baseline: int
    n_run: int

    def as_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        if self.low is None:
            return f"{self.ratio:.2f}x (no interval: one fold)"
        verdict = "" if self.significant else ", not significant"
        return f"{self.ratio:.2f}x [{self.low:.2f}, {self.high:.2f}]{verdict}"


def speed_up(baseline_times: list[float], run_times: list[float], confidence: float = 0.95) -> SpeedUp:
    raw_a, raw_b = np.asarray(baseline_times, dtype=float), np.asarray(run_times, dtype=float)
    if len(raw_a) == 0 or len(raw_b) == 0 or not (np.all(raw_a > 0) and np.all(raw_b > 0)):
        raise ValueError("speed_up needs positive times for both runs")
    a, b = np.log(raw_a), np.log(raw_b)
    diff = float(a.mean() - b.mean())
    ratio = math.exp(diff)
    if len(a) < 2 or len(b) < 2:
        return SpeedUp(ratio, None, None, False, len(a), len(b))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return SpeedUp(ratio, ratio, ratio, ratio != 1.0, len(a), len(b))
    # Welch–Satterthwaite degrees of freedom.
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = float(stats.t.ppf(0.5 + confidence / 2, dof))
    low, high = math.exp(diff - t * se), math.exp(diff + t * se)
    return SpeedUp(ratio, low, high, not (low <= 1.0 <= high), len(a), len(b))
