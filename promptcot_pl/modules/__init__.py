"""LightningModules, one per objective: SFT (cold start, solver, student), EM (E-step, M-step, scorer), DPO."""

from promptcot_pl.modules.dpo import DPOModule
from promptcot_pl.modules.sft import SFTModule

__all__ = ["DPOModule", "SFTModule"]
