"""Stage `selfplay`: self-play from verifiable rewards — the paper's offline DPO rounds (rollouts, the pass-rate
window, chosen/rejected pairs, DPO; SPEC §5) or online GRPO (`selfplay.optimizer: grpo`: `grpo_fit.py`).

Settings: `selfplay.*` (`config.py`, with `selfplay.dpo.*`). Reads: `synth/problems.jsonl`, the solver, the seed's
held-out problems. Writes `selfplay/`: `round_NNN/{rollouts,pairs,pairs_released,outcomes}.jsonl`, `model/`,
`metrics.json` + `DONE`, `history.jsonl`, `accuracy.png`.
Files: `loop.py` (the rounds), `rollouts.py` (sampling and scoring), `pairs.py` (window and pairs), `data.py`
(pair batches), `module.py` (the DPO LightningModule; the loss is `losses/dpo.py`), `plot.py`."""
