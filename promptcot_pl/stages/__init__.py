"""The pipeline's stages, one package each, in the order they run: seed | annotate → coldstart → em → solver →
synth → analyze → sft → selfplay → evaluate. Each package holds the stage's loop (`loop.py`, `run(ctx) ->
metrics`), its settings (`config.py`, the `<stage>.*` keys), and its own data preparation and LightningModule
where it has them; its `__init__` docstring says what it reads and writes. Stages never import each other: what
one stage hands to the next is files in the run directory (docs/architecture.md)."""
