"""Pure tensor functions (no Lightning, no I/O): token/sequence log-probs and masked NLL."""

from promptcot_pl.losses.logprobs import (
    gathered_sequence_logprobs,
    masked_nll,
    sequence_logprobs,
    token_logprobs,
)

__all__ = ["gathered_sequence_logprobs", "masked_nll", "sequence_logprobs", "token_logprobs"]
from promptcot_pl.losses.em import elbo_estimate, em_weights, iwae_bound, weighted_nll  # noqa: E402

__all__ += ["elbo_estimate", "em_weights", "iwae_bound", "weighted_nll"]
