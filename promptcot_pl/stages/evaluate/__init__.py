"""Stage `evaluate`: a chosen model's accuracy (math) or pass@1 (code) on evaluation files (SPEC §7).

Settings: `evaluate.*` (`config.py`). Reads: `evaluate.sets` (release or our JSONL formats), the model named by
`evaluate.model`. Writes `evaluate/`: `<set>/samples.jsonl` (every sample with its reward), `metrics.json`.
Files: `loop.py`."""
