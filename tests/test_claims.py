"""The claims table reads finished run directories and gives, per claim, the per-seed paired difference, the mean
with a 95% interval, and the verdict that interval gives ("holds" above 0, "does not hold" below, "inconclusive"
when it contains 0) — and "not measured" when a run lacks the inputs. Accuracy claims get a paired bootstrap
over the judged samples of their evaluations; the rest Student's t over seeds."""

import json

import numpy as np

from promptcot_pl.reports.claims import CLAIMS, Run, main, measure


def _shards(path, x):
    path.mkdir(parents=True)
    rows = [{"problem": p, "sample": k, "reward": float(x[p, k])} for p in range(x.shape[0]) for k in range(x.shape[1])]
    (path / "shard_00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(root, name, em_gain, frozen_gap, lift, seed):
    run = root / name
    (run / "em/frozen").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "em/history.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"iteration": 0, "em/iwae_heldout": -20.0, "em/nll_x_given_z_heldout": 0.5},
        {"iteration": 1, "em/iwae_heldout": -20.0 + em_gain, "em/nll_x_given_z_heldout": 0.4}]) + "\n")
    (run / "em/frozen/history.jsonl").write_text(json.dumps(
        {"iteration": 1, "em/iwae_heldout": -20.0 + em_gain - frozen_gap}) + "\n")
    rng = np.random.default_rng(seed)
    rates = rng.beta(0.7, 0.7, size=300)
    before, after = ((rng.random((300, 4)) < np.clip(rates + d, 0, 1)[:, None]).astype(float) for d in (0, lift))
    _shards(run / "selfplay/round_000/eval", before)
    _shards(run / "selfplay/round_002/eval", after)
    (run / "selfplay/DONE").write_text(json.dumps({"selfplay/accuracy_gain": after.mean() - before.mean()}))
    return run


def test_verdicts_follow_from_the_intervals_and_missing_inputs_are_not_measured(tmp_path, capsys):
    lifted = [_run(tmp_path, f"s{i}", gain, gap, 0.1, i)
              for i, (gain, gap) in enumerate([(1.0, 0.5), (1.1, -0.1), (0.9, 0.3)])]
    rows = {row["claim"].text: row for row in measure([Run.load(r) for r in lifted])}
    em = rows[CLAIMS[0].text]  # three close values: t over seeds excludes 0
    assert em["verdict"] == "holds" and [round(v, 6) for v in em["values"]] == [1.0, 1.1, 0.9]
    assert em["method"] == "t over 3 seeds" and 0 < em["low"] < 1.0 < em["high"]
    assert rows[CLAIMS[1].text]["verdict"] == "inconclusive"  # +0.5, −0.1, +0.3: the interval contains 0
    selfplay = rows["self-play raises held-out accuracy"]
    assert selfplay["method"].startswith("paired bootstrap") and selfplay["verdict"] == "holds"
    assert selfplay["low"] > 0.03 and len(selfplay["seed_intervals"]) == 3
    assert rows["a rationale makes the problem predictable"]["values"] is None  # no baseline in these runs

    flat = [_run(tmp_path / "flat", f"s{i}", 1.0, 0.5, 0.0, 10 + i) for i in range(3)]
    rows = {row["claim"].text: row for row in measure([Run.load(r) for r in flat])}
    selfplay = rows["self-play raises held-out accuracy"]  # no lift: the interval contains 0
    assert selfplay["verdict"] == "inconclusive" and selfplay["low"] < 0 < selfplay["high"]

    lowered = [_run(tmp_path / "lowered", f"s{i}", -1.0 - 0.1 * i, 0.5, -0.1, 20 + i) for i in range(3)]
    rows = {row["claim"].text: row for row in measure([Run.load(r) for r in lowered])}
    assert rows[CLAIMS[0].text]["verdict"] == "does not hold"  # −1.0, −1.1, −1.2
    assert rows["self-play raises held-out accuracy"]["verdict"] == "does not hold"
    assert rows["SFT on synthesized prompts raises held-out accuracy"]["values"] is None  # no SFT in these runs

    main([str(r) for r in lifted])
    out = capsys.readouterr().out
    assert "| EM raises the held-out bound over the cold start |" in out and "not measured" in out
    assert "promptcot report --claims" in out
