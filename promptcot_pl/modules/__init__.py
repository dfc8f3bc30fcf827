"""LightningModules, one per objective."""

from promptcot_pl.modules.sft import SFTModule

__all__ = ["SFTModule"]
