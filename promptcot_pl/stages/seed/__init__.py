"""Stage `seed`: the built-in domain's corpus (or released problem-generation rows) as (c, z, x) triples.

Settings: `domain.*` (config/common.py). Reads: nothing, or `domain.path` for released rows.
Writes `seed/`: `triples.jsonl`, `train.jsonl`, `heldout.jsonl` (decontaminated against `synth.eval_sets`).
Files: `loop.py`."""
