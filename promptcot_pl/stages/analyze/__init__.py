"""Stage `analyze`: difficulty and diversity of the seed problems and of every synthesized set (SPEC §7).

Settings: `analyze.*` (`config.py`). Reads: `seed/` held-out problems, `synth/<generator>/problems.jsonl`, the
solver. Writes `analyze/`: `table.md`, `metrics.json`, `set_distances.json`, `sets_mds.png`.
Files: `loop.py`, `diversity.py` (embedding distances, distinct-n), `structure.py` (arithmetic levels)."""
