"""Mixed into every vLLM worker (`LLM(worker_extension_cls=...)`, vLLM's hook for RL weight updates, the one TRL's
and verl's weight sync use): `load_checkpoint(dir)` reloads an HF checkpoint into the served model in place.

vLLM's own in-place reload (`reload_weights`) does the work: it restores each layer, loads the checkpoint through
the model's `load_weights` and redoes each layer's post-load processing (the CPU build packs linear weights for its
GEMM kernels). A tied LM head is the one layer it can miss: the checkpoint has no tensor of its own for it (the
model's `load_weights` skips `lm_head.*`), so where the head keeps a processed copy of its weight — the CPU build's
packed GEMM — that copy still holds the old weights (Qwen2.5 ≤ 3B, Llama-3.2, Gemma and SmolLM2 are tied). So the
head is tied again to the reloaded embedding and processed like the other layers; where the head reads the
embedding's storage directly (CUDA) this changes nothing
(tests/test_generation_vllm.py::test_refresh_in_place_serves_the_new_weights). Runs inside vLLM's worker
processes: imported there by name, never by the training process.
"""

from __future__ import annotations


class CheckpointLoader:
    model_runner: object  # the worker's, where this class is mixed in

    def load_checkpoint(self, checkpoint_dir: str) -> bool:
        """Reload the weights of `checkpoint_dir` in place; returns whether a tied LM head was tied again."""
        runner = self.model_runner
        runner.reload_weights(weights_path=checkpoint_dir)  # type: ignore[attr-defined]
        model = runner.get_model()  # type: ignore[attr-defined]
        head, embedding = getattr(model, "lm_head", None), _input_embedding(model)
        config = getattr(model, "config", None)
        if head is None or embedding is None or not getattr(config, "tie_word_embeddings", False):
            return False
        head.weight = embedding.weight
        head.quant_method.process_weights_after_loading(head)
        return True


def _input_embedding(model):
    """The model's input embedding layer (vLLM's `VocabParallelEmbedding` that is not the LM head), or None."""
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    return next((m for m in model.modules()
                 if isinstance(m, VocabParallelEmbedding) and not isinstance(m, ParallelLMHead)), None)
