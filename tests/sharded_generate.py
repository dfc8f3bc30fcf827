"""Run under `torchrun --nproc-per-node 2`: HF generation sharded over the ranks; rank 0 writes the completions
as JSON. tests/test_scale_out.py compares them with one process."""

from __future__ import annotations

import json
import sys

PROMPTS = [f"Concepts: {' ; '.join(words)}\nProblem:" for words in (
    ["fractions"], ["prime numbers", "divisibility"], ["area", "triangles", "similarity"], ["probability"],
    ["modular arithmetic", "remainders", "cycles", "powers"], ["sequences"], ["counting", "permutations"],
    ["geometry", "circles", "chords", "angles", "arcs"], ["algebra"], ["inequalities", "means"],
    ["functions", "composition"])]
SETTINGS = {
    "budget": 400,  # tokens per generate() batch: small, so the prompts span several batches to split
    "sampling": {"greedy": {"temperature": 0.0, "max_new_tokens": 24},
                 "sampled": {"temperature": 1.0, "n": 2, "max_new_tokens": 24, "seed": 7}},
}


def main() -> None:
    from promptcot_pl import distributed
    from promptcot_pl.config import EngineConfig, SamplingConfig
    from promptcot_pl.generation.hf import HFEngine

    model_dir, out = sys.argv[1], sys.argv[2]
    engine = HFEngine(model_dir, EngineConfig(progress=False, device="cpu", batch_token_budget=SETTINGS["budget"]))
    results = {name: [[c.text for c in group] for group in engine.generate(PROMPTS, SamplingConfig(**sampling))]
               for name, sampling in SETTINGS["sampling"].items()}
    if distributed.is_zero():
        with open(out, "w") as handle:
            json.dump(results, handle)


if __name__ == "__main__":
    from promptcot_pl import distributed

    with distributed.joined():
        main()  # a function, so that its engine is gone before the group is left
