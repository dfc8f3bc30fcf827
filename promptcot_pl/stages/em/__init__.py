"""Stage `em`: the rationale/prompt EM loop after the cold start (SPEC §3).

Settings: `em.*` (`config.py`). Reads: `coldstart/` models, `seed/` (or `annotate/`) triples.
Writes `em/`: `iter_NNN/{rationale_model,prompt_model}` + `metrics.json` + `DONE`, `history.jsonl`,
`em_curves.png`; `frozen/` and `baseline/` when asked for. Files: `loop.py` (E-step, M-step, bound),
`candidates.py` (q_φ's samples, their flaws, their scores under p_θ and q_φ), `plot.py` (the curves); the fits
use `modules/weighted_nll.py`, the scoring `runner/scoring.py` (`SequenceScorer`)."""
