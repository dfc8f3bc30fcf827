"""Stage `annotate`: a corpus of problems → concepts, level and rationale from annotator models → triples
(SPEC §3 cold start; RELEASE_FORMATS §2). Replaces `seed` for user corpora.

Settings: `annotate.*` (`config.py`). Reads: `annotate.corpus` (JSONL files or `datasets` datasets).
Writes `annotate/`: `triples.jsonl`, `train.jsonl`, `heldout.jsonl`, `concept_bank.npz`, `concept_sets.jsonl`,
`funnel.json`. Files: `loop.py` (the stage), `parse.py` (reading annotator answers), `oracle.py` (the math
domain's reference annotator)."""
