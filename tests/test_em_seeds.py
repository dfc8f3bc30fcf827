"""Aggregation of EM runs over seeds: mean ± sample std per iteration, the README table, the spread plot."""

import json

import pytest

from promptcot_pl.analysis.em_seeds import load_runs, main, mean_std, table


def _run(root, name, iwae_values, frozen_values=None, baseline=None):
    run = root / name
    (run / "em").mkdir(parents=True)
    (run / "em" / "DONE").touch()

    def write(path, values):
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"iteration": i, "em/iwae_heldout": v, "em/elbo_heldout": 2 * v, "em/nll_x_given_z_heldout": -v / 100}
                for i, v in enumerate(values)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    write(run / "em" / "history.jsonl", iwae_values)
    if frozen_values:
        write(run / "em" / "frozen" / "history.jsonl", frozen_values)
    if baseline is not None:
        (run / "em" / "baseline").mkdir()
        (run / "em" / "baseline" / "metrics.json").write_text(json.dumps({"em/nll_x_no_rationale_heldout": baseline}))
    return run


def test_mean_and_sample_std_per_iteration():
    runs = [[{"iteration": 0, "m": 1.0}, {"iteration": 1, "m": 2.0}],
            [{"iteration": 0, "m": 3.0}, {"iteration": 1, "m": 6.0}]]
    means, stds = mean_std(runs)
    assert [m["m"] for m in means] == [2.0, 4.0]
    assert stds[0]["m"] == pytest.approx(2 ** 0.5)  # sample std of (1, 3)
    assert stds[1]["m"] == pytest.approx(8 ** 0.5)  # sample std of (2, 6)


def test_table_and_plot_from_run_directories(tmp_path):
    runs = [_run(tmp_path, "s0", [-10.0, -9.0], [-10.0, -9.5], baseline=0.30),
            _run(tmp_path, "s1", [-12.0, -11.0], [-12.0, -11.5], baseline=0.34)]
    histories, baselines = load_runs(runs)
    assert set(histories) == {"EM", "EM without E-step"} and baselines == [0.30, 0.34]
    text = table(histories, baselines)
    assert "| EM, cold start | -11.00 ± 1.41 |" in text
    assert "| EM, after iteration 1 | -10.00 ± 1.41 |" in text
    assert "| EM without E-step, after iteration 1 | -10.50 ± 1.41 |" in text
    assert "0.3200 ± 0.0283" in text
    assert "| EM − EM without E-step, paired per seed | +0.50 ± 0.00 |" in text  # the same gain in both seeds
    main([str(r) for r in runs] + ["--png", str(tmp_path / "plot.png")])
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_a_variant_missing_from_one_seed_is_left_out_and_unfinished_runs_are_named(tmp_path):
    runs = [_run(tmp_path, "s0", [-1.0, -0.5], [-1.0, -0.8]), _run(tmp_path, "s1", [-2.0, -1.0])]
    histories, baselines = load_runs(runs)
    assert set(histories) == {"EM"} and baselines == []
    (tmp_path / "s1" / "em" / "DONE").unlink()
    with pytest.raises(FileNotFoundError, match="s1"):
        load_runs(runs)
