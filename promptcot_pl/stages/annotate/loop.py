"""Stage `annotate` (SPEC §3 cold start; RELEASE_FORMATS §2): a corpus of problems → (c, z, x) triples.

Reads `annotate.corpus` (JSONL rows with `problem` and `answer` | `solution` | `tests`, or the release's eval files;
`data/released.read_eval_rows`). Problems are dealt out to `annotate.annotators` in turn (the paper: several
instruct models share the corpus); each annotator
  1. extracts `annotate.num_concepts` foundational concepts and a level (the appendix's concept prompt, answered
     as a Python list and a "Difficulty Level:" line; a row's own `level` wins),
  2. writes the designer's thinking process from problem, concepts and level (the rationale prompt, answered
     after "Thinking Process:"),
through the engine with `prompts.annotator` (chat by default), or as the built-in math domain's reference
annotator ("oracle"). An answer that fails to parse is counted under its reason and the problem goes to the next
annotator; a problem no annotator could annotate is dropped.
Outputs: `triples.jsonl`, its `train.jsonl` / `heldout.jsonl` split (what `coldstart` and every later stage read
instead of stage seed's), `concept_bank.npz` (concept frequencies, co-occurrence counts and embeddings of the
training triples: the synthesis sampler's bank), `concept_sets.jsonl` (the annotated sets, in the format
`synth.concepts_path` reads) and `funnel.json` (per annotator: annotated, and failures by reason).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from promptcot_pl import distributed
from promptcot_pl.data.concepts import ConceptBank
from promptcot_pl.data.formats import PromptFormat
from promptcot_pl.data.jsonl import write_jsonl
from promptcot_pl.data.records import Problem, Triple
from promptcot_pl.data.released import read_eval_rows
from promptcot_pl.distributed import on_rank_zero
from promptcot_pl.domains import split_heldout
from promptcot_pl.domains.distinct import item_id
from promptcot_pl.models import tiny_model_dir
from promptcot_pl.models.embeddings import Embedder
from promptcot_pl.runner.context import StageContext, log, write_json
from promptcot_pl.runner.problems import decontaminated
from promptcot_pl.stages.annotate import oracle
from promptcot_pl.stages.annotate.config import AnnotateConfig
from promptcot_pl.stages.annotate.parse import parse_concepts, parse_level, parse_rationale

Answer = tuple[str, bool]  # (text, cut by the token limit)


class EngineAnnotator:
    """An annotator model behind the generation engine, prompted in `prompts.annotator`'s format."""

    def __init__(self, cfg: AnnotateConfig, fmt: PromptFormat, engine) -> None:
        self.cfg, self.fmt, self.engine = cfg, fmt, engine

    def _ask(self, prompts: list[str]) -> list[Answer]:
        sampling = self.cfg.sampling
        out = self.engine.generate(prompts, sampling)
        return [(group[0].text, group[0].finish_reason == "length") for group in out]

    def concepts(self, problems: Sequence[Problem]) -> list[Answer]:
        return self._ask([self.fmt.prompt("any", text_role="annotate_concepts", problem=p.problem,
                                          num_concepts=str(self.cfg.num_concepts), levels=", ".join(self.cfg.levels))
                          for p in problems])

    def rationales(self, problems: Sequence[Problem], concepts: Sequence[list[str]],
                   levels: Sequence[str]) -> list[Answer]:
        return self._ask([self.fmt.prompt("any", text_role="annotate_rationale", problem=p.problem, level=level,
                                          concept_list="\n".join(f"{i}. {c}" for i, c in enumerate(cs, start=1)))
                          for p, cs, level in zip(problems, concepts, levels)])


class OracleAnnotator:
    """The built-in math domain's reference annotator (`stages/annotate/oracle.py`)."""

    def __init__(self, cfg: AnnotateConfig) -> None:
        self.cfg = cfg

    def concepts(self, problems: Sequence[Problem]) -> list[Answer]:
        return [(oracle.concepts_answer(p.problem, self.cfg.num_concepts, p.level or self.cfg.levels[0]), False)
                for p in problems]

    def rationales(self, problems, concepts, levels) -> list[Answer]:
        return [(oracle.rationale_answer(p.problem, cs, level), False) for p, cs, level in zip(problems, concepts, levels)]


@contextmanager
def _annotator(ctx: StageContext, name: str, corpus: list[Problem]) -> Iterator[EngineAnnotator | OracleAnnotator]:
    """The annotator `name`, its engine (if any) closed when the block ends."""
    cfg = ctx.cfg.annotate
    path = name
    match name:
        case "oracle":
            yield OracleAnnotator(cfg)
            return
        case "tiny":  # untrained: shows the failure accounting end to end, rarely an annotation
            fmt = ctx.prompt_format("annotator", None)
            texts = [p.problem for p in corpus] + [
                fmt.message("any", text_role="annotate_concepts", problem=p.problem, levels=", ".join(cfg.levels),
                            num_concepts=str(cfg.num_concepts)) for p in corpus[:50]]
            path = str(distributed.broadcast(on_rank_zero(tiny_model_dir, ctx.cfg.model.tiny, texts,
                                                          ctx.cfg.model.cache_dir, ctx.cfg.seed)))  # see coldstart
    with ctx.engines.open(path) as engine:
        yield EngineAnnotator(cfg, ctx.prompt_format("annotator", path), engine)


def annotate(annotator, name: str, batch: list[Problem], cfg: AnnotateConfig, failures: Counter) -> list[Triple]:
    """Triples for the problems of `batch` this annotator annotated; its failures counted by reason."""
    parsed: list[tuple[Problem, list[str], str]] = []
    for problem, (text, cut) in zip(batch, annotator.concepts(batch)):
        concepts, why = parse_concepts(text, cfg.num_concepts, truncated=cut)
        level = problem.level
        if why is None and level is None:
            level, why = parse_level(text, list(cfg.levels))
        if why:
            failures[why] += 1
            continue
        assert concepts is not None and level is not None  # the parsers return a value or a reason
        parsed.append((problem, concepts, level))
    if not parsed:
        return []
    answers = annotator.rationales([p for p, _, _ in parsed], [c for _, c, _ in parsed], [lv for _, _, lv in parsed])
    triples = []
    for (problem, concepts, level), (text, cut) in zip(parsed, answers):
        rationale, why = parse_rationale(text, truncated=cut)
        if why:
            failures[why] += 1
            continue
        assert rationale is not None
        triples.append(Triple(id=item_id(f"{problem.domain}-annotated", problem.problem), domain=problem.domain,
                              concepts=concepts, level=level, rationale=rationale, problem=problem.problem,
                              answer=problem.answer, solution=problem.meta.get("solution"), tests=problem.tests,
                              source=f"annotate:{name}"))
    return triples


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.annotate
    if not cfg.corpus or not cfg.annotators:
        raise ValueError("annotate: give annotate.corpus=[problems.jsonl, ...] and at least one annotate.annotators")
    corpus = [p for path in cfg.corpus for p in read_eval_rows(path)][: cfg.max_items]
    n = len(cfg.annotators)
    done: dict[int, Triple] = {}
    failures: dict[str, Counter[str]] = {name: Counter() for name in cfg.annotators}
    annotated: Counter[str] = Counter()
    # attempt r of problem i goes to annotator (i + r) mod n: dealt out in turn, a failure retried by the next one
    for attempt in range(n):
        for a, name in enumerate(cfg.annotators):
            indices = [i for i in range(len(corpus)) if i not in done and (i + attempt) % n == a]
            if not indices:
                continue
            with _annotator(ctx, name, corpus) as annotator:
                triples = annotate(annotator, name, [corpus[i] for i in indices], cfg, failures[name])
            by_problem = {t.problem: t for t in triples}
            for i in indices:
                if corpus[i].problem in by_problem:
                    done[i] = by_problem[corpus[i].problem]
                    annotated[name] += 1
    triples = [done[i] for i in sorted(done)]
    funnel = {"problems": len(corpus), "triples": len(triples),
              "annotators": {name: {"annotated": annotated[name], "failed": dict(sorted(failures[name].items()))}
                             for name in cfg.annotators}}
    write_json(ctx.stage_dir / "funnel.json", funnel)
    ctx.tracker.log_artifact(ctx.run_id, ctx.stage_dir / "funnel.json")
    for name in cfg.annotators:
        log.info("annotate/%s: %d annotated; failed: %s", name, annotated[name],
                 ", ".join(f"{k} {v}" for k, v in sorted(failures[name].items())) or "none")
    if len(triples) < 2:
        raise ValueError(f"annotate: {len(triples)} of {len(corpus)} problems annotated (see "
                         f"{ctx.stage_dir / 'funnel.json'}); coldstart needs at least 2")
    train, heldout = split_heldout(triples, ctx.cfg.domain.heldout_fraction, ctx.cfg.seed, ctx.cfg.domain.n_heldout)
    train, contaminated = decontaminated(ctx, train, "annotate", heldout=False)  # training on an evaluation problem is a leak
    write_jsonl(ctx.stage_dir / "triples.jsonl", triples)
    write_jsonl(ctx.stage_dir / "train.jsonl", train)
    write_jsonl(ctx.stage_dir / "heldout.jsonl", heldout)
    write_jsonl(ctx.stage_dir / "concept_sets.jsonl", [{"concepts": t.concepts, "level": t.level} for t in triples])
    bank = ConceptBank.from_triples(train, Embedder(ctx.cfg.synth.embedding_model, ctx.cfg.model.cache_dir))
    on_rank_zero(bank.save, ctx.stage_dir / "concept_bank.npz")
    log.info("annotate: %d of %d problems → %d triples (%d train, %d held out), %d concepts in the bank",
             len(triples), len(corpus), len(triples), len(train), len(heldout), len(bank.concepts))
    metrics = {"annotate/problems": float(len(corpus)), "annotate/triples": float(len(triples)),
               "annotate/n_train": float(len(train)), "annotate/n_heldout": float(len(heldout)),
               "annotate/concepts": float(len(bank.concepts)), "annotate/train_contaminated": float(contaminated)}
    for name in cfg.annotators:
        metrics[f"annotate/{name}/annotated"] = float(annotated[name])
        metrics.update({f"annotate/{name}/failed_{k}": float(v) for k, v in failures[name].items()})
    return metrics
