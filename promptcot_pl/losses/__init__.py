"""Pure tensor functions (no Lightning, no I/O): chunked token log-probs and the objectives' losses."""

from promptcot_pl.losses.em import elbo_estimate, em_weights, iwae_bound
from promptcot_pl.losses.logprobs import chunked_logprobs, label_positions, owner_sums

__all__ = ["chunked_logprobs", "elbo_estimate", "em_weights", "iwae_bound", "label_positions", "owner_sums"]
