"""The held-out accuracy intervals (`runner/confidence.py`): the bootstrap over problems covers the true accuracy of
a world where problems differ in difficulty about 95% of the time (a bootstrap over samples alone, ignoring that
problems differ, covers it far less often), is as wide as the analytic standard error says (drawing samples anew
inside each problem as well was ~1.2× too wide), and a paired difference separates a real gain from none."""

import json

import numpy as np
import pytest

from promptcot_pl.runner.confidence import ci_metrics, combined_interval, interval, scores


def _world(rng, problems=100, samples=4):
    """Per-problem pass rates spread over (0, 1) (true mean 0.5), and one evaluation of them."""
    rates = rng.beta(0.7, 0.7, size=problems)  # the naive bootstrap: 101 of 120
    return rates, (rng.random((problems, samples)) < rates[:, None]).astype(float)


def test_the_interval_covers_the_true_accuracy_at_its_nominal_rate():
    rng = np.random.default_rng(0)
    covered = naive = 0
    reps = 400
    for rep in range(reps):
        _, x = _world(rng)
        _, low, high = interval(x, seed=rep, resamples=800)
        covered += low <= 0.5 <= high
        flat = x.reshape(-1)  # every sample an independent draw: what ignoring problems would give
        means = rng.choice(flat, size=(800, flat.size)).mean(axis=1)
        lo, hi = np.percentile(means, [2.5, 97.5])
        naive += lo <= 0.5 <= hi
    assert 0.92 <= covered / reps <= 0.98, covered / reps  # 95% ± 3 points
    assert naive < covered - 30, (naive, covered)  # the check can fail: the sample-only bootstrap under-covers


def test_the_interval_combined_over_seeds_covers_the_mean_gain_at_its_nominal_rate():
    """Three seeds, each its own problems and a model that gains 0.05 on average: the interval of the mean
    paired gain over the seeds (`combined_interval`) covers 0.05 in 95% ± 3 points of repetitions."""
    rng = np.random.default_rng(5)
    covered, reps = 0, 300
    for rep in range(reps):
        evaluations = []
        for _ in range(3):
            rates = rng.beta(0.7, 0.7, size=150)
            lifted = np.clip(rates + rng.normal(0.05, 0.05, size=150), 0, 1)
            lifted += 0.05 - (lifted - rates).mean()  # exactly 0.05 over these problems on average
            evaluations.append(tuple((rng.random((150, 4)) < r[:, None]).astype(float) for r in (rates, lifted)))
        _, low, high = combined_interval(evaluations, seed=rep, resamples=800)
        covered += low <= 0.05 <= high
    assert 0.92 <= covered / reps <= 0.98, covered / reps


def test_the_width_matches_the_standard_error_of_the_problem_means():
    """Problems that differ little (pass rates ~ Beta(5, 5)) and 4 samples each: most of the noise is within
    problems. The 95% interval is 2 × 1.96 standard errors of the mean of the problems' means, within 8%; the
    two-level bootstrap (samples drawn anew inside each drawn problem too) was 1.23× that."""
    rng = np.random.default_rng(3)
    ratios = []
    for rep in range(20):
        x = (rng.random((400, 4)) < rng.beta(5, 5, size=400)[:, None]).astype(float)
        _, low, high = interval(x, seed=rep)
        ratios.append((high - low) / (2 * 1.96 * x.mean(axis=1).std(ddof=1) / np.sqrt(len(x))))
    assert 0.92 < np.mean(ratios) < 1.08, np.mean(ratios)


def test_a_paired_difference_separates_a_gain_from_none():
    rng = np.random.default_rng(1)
    rates, before = _world(rng, problems=200)
    again = (rng.random(before.shape) < rates[:, None]).astype(float)  # the same model, sampled anew
    gain, low, high = interval(before, again, seed=0)
    assert low < 0 < high and abs(gain) < 0.05
    better = (rng.random(before.shape) < np.minimum(rates + 0.1, 1)[:, None]).astype(float)
    gain, low, high = interval(before, better, seed=0)
    assert low > 0 and 0.05 < gain < 0.15
    with pytest.raises(ValueError, match="same problems"):
        interval(before, better[:10])


def test_scores_are_read_back_from_judged_shards(tmp_path):
    rows = [{"problem": p, "sample": k, "reward": None if (p, k) == (1, 1) else float(p == k)}
            for p in range(3) for k in range(2)]
    for s, part in enumerate((rows[:4], rows[4:])):
        (tmp_path / f"shard_{s:05d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    x = scores(tmp_path)
    assert x.shape == (3, 2) and np.isnan(x[1, 1]) and x[0, 0] == 1 and x[2, 0] == 0
    metrics = ci_metrics("acc", tmp_path, tmp_path)
    assert metrics["acc/gain"] == 0 and metrics["acc/ci_low"] <= np.nanmean(x) <= metrics["acc/ci_high"]


def test_pairing_narrows_the_interval_of_a_difference():
    rng = np.random.default_rng(2)
    rates, before = _world(rng, problems=150, samples=16)  # the problems' spread dominates the samples' noise
    after = (rng.random(before.shape) < np.minimum(rates + 0.05, 1)[:, None]).astype(float)
    _, low, high = interval(before, after, seed=0)
    # unpaired: each evaluation resampled on its own draw of problems
    a, b = interval(before, seed=1), interval(after, seed=2)
    unpaired = 2 * 1.96 * np.hypot((a[2] - a[1]) / 3.92, (b[2] - b[1]) / 3.92)
    assert high - low < 0.6 * unpaired  # the problems' shared difficulty cancels


def test_per_level_intervals(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    for path, right in ((before, {0}), (after, {0, 1})):
        path.mkdir()
        rows = [{"problem": p, "sample": k, "reward": float(p % 2 in right)} for p in range(40) for k in range(2)]
        (path / "shard_00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = ci_metrics("acc", after, before, levels=["Level 1", "Level 2"] * 20)
    assert metrics["acc/level_1/gain"] == 0 and metrics["acc/level_2/gain"] == 1.0
    assert metrics["acc/level_2/gain_ci_low"] == 1.0 and metrics["acc/gain"] == 0.5


def test_a_higher_confidence_widens_the_interval_and_covers_more():
    """`confidence` picks the percentiles: over 120 worlds a 99% interval covers the truth at least as often as a
    95% one and is wider every time (a Bonferroni-corrected interval for one of several settings tried)."""
    rng = np.random.default_rng(2)
    covered = {0.95: 0, 0.99: 0}
    for rep in range(120):
        _, x = _world(rng)
        (_, lo95, hi95), (_, lo99, hi99) = (interval(x, seed=rep, resamples=800, confidence=c) for c in covered)
        assert lo99 < lo95 and hi95 < hi99
        covered[0.95] += lo95 <= 0.5 <= hi95
        covered[0.99] += lo99 <= 0.5 <= hi99
    assert covered[0.99] >= covered[0.95] and covered[0.99] >= 0.96 * 120, covered
    with pytest.raises(ValueError, match="confidence"):
        interval(x, confidence=95)
