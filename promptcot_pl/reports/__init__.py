"""Reports over finished run directories (files only: `history.jsonl`, `DONE`): the paper's claims across seeds
(`claims.py`) and per-stage comparisons across runs."""
