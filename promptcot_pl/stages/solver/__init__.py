"""Stage `solver`: the fixed solver x → solution that measures difficulty, votes on synthesized answers and
starts self-play (SPEC §7).

Settings: `solver.*` (`config.py`). Reads: `seed/` (or `annotate/`) triples with worked solutions.
Writes `solver/`: `fit/model` (tiny) or `model_path.txt` (a given HF model). Files: `loop.py`."""
