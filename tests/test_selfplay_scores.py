"""A round's reference log-probs are cached with a digest of the pairs they score: a rerun reuses them for the same
pairs only, so a partly deleted round directory cannot pair stale references with new pairs of the same shape."""

import torch

from promptcot_pl.config import TrainerConfig
from promptcot_pl.models import load_tokenizer
from promptcot_pl.stages.selfplay import scores
from promptcot_pl.stages.selfplay.data import encode_preferences

CPU = TrainerConfig(accelerator="cpu", enable_progress_bar=False)


def test_cached_reference_log_probs_are_reused_for_the_same_pairs_only(tiny_dir, tmp_path):
    tok = load_tokenizer(tiny_dir)
    prompt = "Problem:\nWhat is 2 + 3?\nSolution:\n"
    pairs = [(prompt, "2 + 3 = 5. The answer is 5.", "2 + 3 = 6. The answer is 6."),
             (prompt, "The answer is 5.", "The answer is 7.")]
    rows, kept = encode_preferences(tok, pairs, 256)
    flat = scores.scored_completions(rows, [pairs[i][0] for i in kept])
    first = scores.reference(tiny_dir, flat, CPU, 256, tmp_path)
    assert first.shape == (2, 2) and torch.isfinite(first).all()
    cached = tmp_path / "reference_logprobs.pt"
    saved = torch.load(cached)
    torch.save({**saved, "logprobs": saved["logprobs"] + 100}, cached)  # a marker: reused iff returned
    assert torch.equal(scores.reference(tiny_dir, flat, CPU, 256, tmp_path), first + 100)
    swapped = [flat[2], flat[3], flat[0], flat[1]]  # other pairs, same shape
    again = scores.reference(tiny_dir, swapped, CPU, 256, tmp_path)
    assert torch.allclose(again, first.flip(0))  # scored anew, not the stale cache
    torch.save(first, cached)  # a cache from before digests: scored anew too
    assert torch.allclose(scores.reference(tiny_dir, flat, CPU, 256, tmp_path), first)
