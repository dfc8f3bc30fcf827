"""The runner floor: what every stage's loop stands on, below the stages and above the shared floors.

`context.py` (the `StageContext` a stage runs in: its directory, the tracker, engines, rewards), `fit.py`
(resumable fits of the shared modules), `scoring.py` (sequence log-probs through `Trainer.predict`),
`model_paths.py` (where base models and the solver come from), `problems.py` (loading and decontaminating
problem sets), `difficulty.py` (a solver's pass rate on a set), `stage_cache.py`, `run_lock.py`, `pruning.py`.
The pipeline that runs the stages in order is `promptcot_pl/pipeline.py`, above them."""
