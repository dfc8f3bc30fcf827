"""Models: load any Hugging Face causal LM + tokenizer; build the tiny offline model and tokenizer."""

from promptcot_pl.models.loading import DTYPES, load_model, load_tokenizer, stop_ids
from promptcot_pl.models.tiny import tiny_model_dir

__all__ = ["DTYPES", "load_model", "load_tokenizer", "stop_ids", "tiny_model_dir"]
