"""Stage `coldstart`: maximum-likelihood fits of q_φ on (c, x) → z and p_θ on c → (z, x) (SPEC §3).

Settings: `coldstart.*` (`config.py`), `model.*`. Reads: `seed/` (or `annotate/`) train and held-out triples.
Writes `coldstart/`: `rationale_model/model`, `prompt_model/model` (HF checkpoints), held-out NLL before/after.
Files: `loop.py`; the fit is `runner/fit.py` with the shared weighted-NLL module (`modules/`)."""
