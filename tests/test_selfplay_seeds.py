"""Aggregation of self-play runs over seeds: mean ± sample std per round, paired gains, the plot."""

import json

import pytest

from promptcot_pl.analysis.selfplay_seeds import load_histories, main, table


def _run(root, name, accuracies, pairs=(0, 10, 12)):
    run = root / name
    (run / "selfplay").mkdir(parents=True)
    (run / "selfplay" / "DONE").touch()
    rows = [{"round": r, "selfplay/accuracy_heldout": a, "selfplay/pairs": p}
            for r, (a, p) in enumerate(zip(accuracies, pairs))]
    (run / "selfplay" / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_table_reports_mean_std_and_paired_gains(tmp_path, capsys):
    runs = [_run(tmp_path, "s0", [0.10, 0.12, 0.15]), _run(tmp_path, "s1", [0.30, 0.31, 0.33])]
    text = table(load_histories(runs))
    # round 2: mean (0.15 + 0.33) / 2 = 0.24, sample std |0.33 - 0.15| / √2 = 0.1273; gains 0.05 and 0.03
    assert "| 2 | 0.2400 ± 0.1273 | +0.0400 ± 0.0141 | 12.0 |" in text
    assert "per-seed gain after round 2: +0.0500, +0.0300" in text
    main([str(r) for r in runs] + ["--png", str(tmp_path / "acc.png")])
    assert (tmp_path / "acc.png").stat().st_size > 0 and "plot:" in capsys.readouterr().out


def test_an_unfinished_run_is_named(tmp_path):
    run = _run(tmp_path, "s0", [0.1, 0.2])
    (run / "selfplay" / "DONE").unlink()
    with pytest.raises(FileNotFoundError, match="s0: stage selfplay has not finished"):
        load_histories([run])
