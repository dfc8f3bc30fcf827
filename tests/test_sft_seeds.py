"""Aggregation of SFT runs over seeds: mean ± sample std per source and the paired difference between sources."""

import json

import pytest

from promptcot_pl.analysis.sft_seeds import load_metrics, table


def _run(root, name, before, seed_acc, synth_acc):
    run = root / name
    (run / "sft").mkdir(parents=True)
    metrics = {"sft/accuracy_heldout_before": before, "sft/seed/accuracy_heldout": seed_acc,
               "sft/synth/accuracy_heldout": synth_acc, "sft/seed/traces": 10, "sft/synth/traces": 12,
               "sft/seed/trace_tokens": 100, "sft/synth/trace_tokens": 98}
    (run / "sft" / "DONE").write_text(json.dumps(metrics))
    return run


def test_table_reports_sources_and_paired_differences(tmp_path):
    runs = [_run(tmp_path, "s0", 0.04, 0.05, 0.07), _run(tmp_path, "s1", 0.06, 0.07, 0.08)]
    text = table(load_metrics(runs))
    assert "| before SFT | 0.0500 ± 0.0141 | – | – |" in text
    assert "| after SFT on `synth` prompts | 0.0750 ± 0.0071 | 12 | 98 |" in text
    assert "`synth` − `seed` per seed: +0.0200, +0.0100 (mean 0.0150 ± 0.0071)" in text


def test_an_unfinished_run_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="s9: stage sft has not finished"):
        load_metrics([tmp_path / "s9"])
