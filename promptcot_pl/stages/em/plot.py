"""Held-out EM metrics against iteration, one line per variant (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

PANELS = (("em/iwae_heldout", "IWAE bound (nats / pair, higher is better)"),
          ("em/elbo_heldout", "ELBO (nats / pair)"),
          ("em/nll_x_given_z_heldout", "NLL of x given greedy z (nats / token)"))


def plot_history(variants: Mapping[str, Sequence[Mapping[str, float]]], path: str | Path,
                 baseline: float | None = None, spread: Mapping[str, Sequence[Mapping[str, float]]] | None = None) -> Path:
    """`variants`: label → per-iteration metric rows (with "iteration"); `spread`: optional label → rows of
    standard deviations drawn as bands; `baseline`: the no-rationale NLL of x, drawn as a dashed line."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6))
    for ax, (key, title) in zip(axes, PANELS):
        for label, rows in variants.items():
            xs = [r["iteration"] for r in rows if key in r]
            ys = [r[key] for r in rows if key in r]
            ax.plot(xs, ys, marker="o", label=label)
            if spread and label in spread:
                sd = [r[key] for r in spread[label] if key in r]
                ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)], alpha=0.2)
        if key == "em/nll_x_given_z_heldout" and baseline is not None:
            ax.axhline(baseline, linestyle="--", color="grey", label="no rationale")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("EM iteration (0 = cold start)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
