"""The claims table reads finished run directories and says, per claim, whether the paired difference has the
claimed sign in every seed — and "not measured" when a run lacks the inputs."""

import json

from promptcot_pl.reports.claims import CLAIMS, Run, main, measure


def _run(root, name, em_gain, frozen_gap, selfplay_gain):
    run = root / name
    (run / "em/frozen").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "em/history.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"iteration": 0, "em/iwae_heldout": -20.0, "em/nll_x_given_z_heldout": 0.5},
        {"iteration": 1, "em/iwae_heldout": -20.0 + em_gain, "em/nll_x_given_z_heldout": 0.4}]) + "\n")
    (run / "em/frozen/history.jsonl").write_text(json.dumps(
        {"iteration": 1, "em/iwae_heldout": -20.0 + em_gain - frozen_gap}) + "\n")
    (run / "selfplay").mkdir()
    (run / "selfplay/DONE").write_text(json.dumps({"selfplay/accuracy_gain": selfplay_gain}))
    return run


def test_verdicts_are_per_seed_signs_and_missing_inputs_are_not_measured(tmp_path, capsys):
    runs = [_run(tmp_path, "s0", 1.0, 0.5, 0.02), _run(tmp_path, "s1", 0.5, -0.1, -0.01),
            _run(tmp_path, "s2", 0.2, 0.3, 0.01)]
    rows = {row["claim"].text: row for row in measure([Run.load(r) for r in runs])}
    em = rows[CLAIMS[0].text]
    assert em["verdict"] == "holds" and [round(v, 6) for v in em["values"]] == [1.0, 0.5, 0.2]
    assert abs(em["mean"] - 0.5667) < 1e-4
    assert rows[CLAIMS[1].text]["verdict"] == "mixed"
    assert rows["self-play raises held-out accuracy"]["verdict"] == "mixed"
    assert rows["a rationale makes the problem predictable"]["values"] is None  # no baseline in these runs
    main([str(r) for r in runs])
    out = capsys.readouterr().out
    assert "| EM raises the held-out bound over the cold start |" in out and "not measured" in out
