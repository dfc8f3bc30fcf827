"""Held-out accuracy against self-play round (matplotlib); round 0 is the policy before self-play."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_accuracy(history: Sequence[Mapping[str, float]], path: str | Path,
                  spread: Sequence[float] | None = None, label: str = "held-out accuracy") -> Path:
    """`history`: per-round rows with "round" and "selfplay/accuracy_heldout"; `spread`: optional per-round
    standard deviations (over seeds), drawn as a band."""
    rounds = [int(h["round"]) for h in history]
    accuracy = [h["selfplay/accuracy_heldout"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(rounds, accuracy, marker="o", label=label)
    if spread is not None:
        ax.fill_between(rounds, [a - s for a, s in zip(accuracy, spread)], [a + s for a, s in zip(accuracy, spread)],
                        alpha=0.2)
    ax.set_xlabel("self-play round (0 = before)")
    ax.set_ylabel("accuracy (mean reward over samples)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
