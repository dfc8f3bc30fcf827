"""Stage `sft`: a student learns from a teacher's traces on prompts (SPEC §6).

Settings: `sft.*` (`config.py`). Reads: `synth/problems.jsonl` and/or the seed's training problems, the solver
(or `sft.student`). Writes `sft/<source>/`: `traces.jsonl`, `traces_released.jsonl`, `funnel.json`, the student
model and its held-out accuracy before and after. Files: `loop.py`, `traces.py` (teacher traces and filters)."""
