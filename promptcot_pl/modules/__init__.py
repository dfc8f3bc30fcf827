"""LightningModules shared by several stages: `WeightedNLLModule` (every maximum-likelihood fit: cold start,
solver, SFT student, E- and M-step) and `SequenceScorer` (batched log-probs: EM candidates, DPO references), with
the pieces modules use (`optim`: AdamW groups and schedule, `reduce`: exact means over ranks and accumulation,
`data`: DataModules). Self-play's DPO module is `stages/selfplay/module.py`."""

from promptcot_pl.modules.scorer import SequenceScorer
from promptcot_pl.modules.weighted_nll import WeightedNLLModule

__all__ = ["SequenceScorer", "WeightedNLLModule"]
