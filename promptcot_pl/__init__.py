"""promptcot_pl: PromptCoT 2.0 as a PyTorch Lightning experiment framework."""

__version__ = "0.1.0"
