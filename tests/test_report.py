"""`promptcot report`: finished run directories compared from what their stages wrote — mean ±
sample std of final metrics, paired differences, per-step curves (EM's frozen variant under its MLflow name)."""

import json

import pytest

from promptcot_pl.cli import main
from promptcot_pl.reports.report import Run, report


def _run(root, name, sft, iwae, frozen=None):
    run = root / name
    (run / "sft").mkdir(parents=True)
    (run / "sft" / "DONE").write_text(json.dumps(sft))
    (run / "em").mkdir()
    (run / "em" / "DONE").write_text(json.dumps({"em/iwae_heldout": iwae[-1]}))
    rows = [{"iteration": i, "em/iwae_heldout": v} for i, v in enumerate(iwae)]
    (run / "em" / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if frozen:
        (run / "em" / "frozen").mkdir()
        rows = [{"iteration": i, "em/iwae_heldout": v} for i, v in enumerate(frozen)]
        (run / "em" / "frozen" / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


@pytest.fixture
def runs(tmp_path):
    return [_run(tmp_path, "s0", {"sft/seed/accuracy_heldout": 0.05, "sft/synth/accuracy_heldout": 0.07},
                 [-10.0, -9.0], [-10.0, -9.5]),
            _run(tmp_path, "s1", {"sft/seed/accuracy_heldout": 0.07, "sft/synth/accuracy_heldout": 0.08},
                 [-12.0, -11.0], [-12.0, -11.5])]


def test_means_sample_stds_and_paired_differences(runs):
    text, numbers = report([Run.read(r) for r in runs], metrics=["sft/*/accuracy_heldout"],
                           diffs=[("sft/seed/accuracy_heldout", "sft/synth/accuracy_heldout")])
    assert "| `sft/synth/accuracy_heldout` | 0.0750 ± 0.0071 | 0.0700 | 0.0800 |" in text
    assert "| `sft/seed/accuracy_heldout` | 0.0600 ± 0.0141 |" in text  # sample std of (0.05, 0.07)
    assert "paired per run: +0.0200, +0.0100 (mean 0.0150 ± 0.0071)" in text
    assert numbers["diffs"]["sft/synth/accuracy_heldout - sft/seed/accuracy_heldout"]["values"] == pytest.approx(
        [0.02, 0.01])


def test_curves_per_step_with_the_frozen_variant_under_its_mlflow_name(runs, tmp_path, capsys):
    assert main(["report", *map(str, runs), "--curve", "em*/iwae_heldout", "--png", str(tmp_path / "c.png"),
                 "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "| 1 | -10.0000 ± 1.4142 |" in out  # em/iwae_heldout after iteration 1
    assert "`em_frozen/iwae_heldout`" in out and "| 1 | -10.5000 ± 1.4142 |" in out
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert set(json.loads((tmp_path / "r.json").read_text())["curves"]) == {"em/iwae_heldout",
                                                                           "em_frozen/iwae_heldout"}


def test_a_metric_a_run_lacks_and_an_unfinished_run_are_named(runs, tmp_path, capsys):
    (runs[1] / "sft" / "DONE").write_text(json.dumps({"sft/seed/accuracy_heldout": 0.1}))
    assert main(["report", *map(str, runs), "--metric", "sft/synth/accuracy_heldout"]) == 2
    assert f"{runs[1]}: no final metric (<stage>/DONE) 'sft/synth/accuracy_heldout'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "empty: no finished stage" in capsys.readouterr().err
