"""Small statistics shared by the metrics: rates and means with 95% intervals."""

from __future__ import annotations

import math

from scipy import stats as _st

Z95 = 1.959963984540054


def ratio(num: float | None, den: float | None) -> float | None:
    """``num / den``, or None when the denominator is zero or missing."""
    if num is None or not den:
        return None
    return num / den


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval for a proportion (Wilson 1927); (None, None) when n = 0."""
    if n <= 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def nps_score(promoters: int, detractors: int, n: int) -> float | None:
    """NPS = % promoters (9-10) - % detractors (0-6), in points from -100 to 100."""
    if n <= 0:
        return None
    return 100.0 * (promoters - detractors) / n


def nps_interval(promoters: int, detractors: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Normal-approximation interval for NPS.

    Each answer scores +1 (promoter), 0 (passive) or -1 (detractor); NPS is 100 times
    their mean, so Var = (p_P + p_D - (p_P - p_D)^2) / n.
    """
    if n <= 0:
        return None, None
    pp, pd = promoters / n, detractors / n
    se = math.sqrt(max(pp + pd - (pp - pd) ** 2, 0.0) / n)
    centre = pp - pd
    return 100.0 * max(-1.0, centre - z * se), 100.0 * min(1.0, centre + z * se)


def mean_interval(mean: float | None, sd: float | None, n: int) -> tuple[float | None, float | None]:
    """Student-t 95% interval for a mean; (None, None) with fewer than two values."""
    if mean is None or sd is None or n < 2:
        return None, None
    half = _st.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half
