"""The `sft.*` settings of an experiment (a part of `ExperimentConfig`, composed in `promptcot_pl/experiment.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from promptcot_pl.config.common import OptimConfig, SamplingConfig, at_least_one


@dataclass
class SFTConfig:
    """The SFT regime (SPEC §6): a student learns from a teacher's traces on prompts; held-out accuracy of the
    student before and after (the seed's held-out problems, ground-truth answers)."""

    # "oracle": the built-in domain's reference solver (math); "solver": the model of stage `solver`; anything
    # else: a Hugging Face model path or name, sampled through the engine.
    teacher: str = "oracle"
    # Whose prompts the teacher answers: "synth" (the synthesized problems) and/or "seed" (the seed's training
    # problems). With several, one student is trained per source on the same budget of trained (completion) tokens
    # (the smallest source's).
    sources: list[str] = field(default_factory=lambda: ["synth"])
    traces: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=1, temperature=1.0, max_new_tokens=512))
    filter_correct: bool = False  # drop traces whose answer differs from the problem's reference (paper: off)
    max_prompts: int = 5000  # per source
    # "solver": start from the solver (which was fitted on the seed's problems: the seed arm replays its data);
    # "disjoint": a solver fitted (as stage solver fits one, for as many steps) on one half of the seed's training
    # problems, the seed arm's prompts drawn from the other half — a student that has seen neither source;
    # "tiny": the untrained tiny model; else an HF path.
    student: str = "solver"
    # A control arm "replay": the solver fitted again, at the same budget and schedule, on the seed's training
    # problems it was fitted on (its own data) — what a fit does to it when it learns nothing new.
    replay_control: bool = False
    epochs: int = 2
    batch_size: int = 16  # traces per optimizer step, packed or not (modules/data.PairDataModule)
    packing: bool = True  # exact packing (block-diagonal attention), see data/collate.py
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=8e-5))  # the paper: 8e-5 (batch 1024)
    eval: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, temperature=0.6, top_p=0.95))
    eval_limit: int = 200

    def invalid(self) -> list[tuple[str, str]]:
        out = at_least_one(self, "epochs", "batch_size", "max_prompts", "eval_limit")
        bad = [x for x in self.sources if x not in ("synth", "seed")]
        if bad or not self.sources or len(set(self.sources)) != len(self.sources):
            out.append(("sources", f"expected a non-empty list of distinct 'synth' and/or 'seed', got "
                                   f"{list(self.sources)}"))
        return out

