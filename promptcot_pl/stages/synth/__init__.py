"""Stage `synth`: concept sets → (z, x) ~ p_θ(·|c) → filters → verifiable targets → problems (SPEC §4).

Settings: `synth.*` (`config.py`). Reads: the concept bank (`seed/` or `annotate/`, or `synth.concepts_path`),
p_θ from `em/` (and `coldstart/`), the solver, `synth.eval_sets` for decontamination.
Writes `synth/`: `problems.jsonl` and per generator `generated.jsonl`, `problems.jsonl`, `funnel.json`
(`problems_released.jsonl` when asked). Files: `loop.py`, `targets.py` (reference answers and unit tests),
`test_writer.py` (tests for code problems)."""
