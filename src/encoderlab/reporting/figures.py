"""Figures (matplotlib, Agg backend, PNG): overlaid training curves and confusion matrices."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from encoderlab.reporting.load import RunData  # noqa: E402
from encoderlab.reporting.metrics import TRAIN_ACC, TRAIN_LOSS, VALID_LOSS, series  # noqa: E402

DPI = 100


def _plain(text: object) -> str:
    """User text (labels, run names, config values) shown as written: matplotlib reads text
    between two `$` as mathtext, which garbles `$5-$10` and fails to draw `$_$` at all."""
    return str(text).replace("$", r"\$")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def curves(runs: list[RunData], labels: dict[str, str], path: Path, x: str = "step") -> Path | None:
    """Loss (left) and accuracy / primary metric (right) of every run, train dashed and valid
    solid, one colour per run; None when no run has a point to plot."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = plt.get_cmap("tab10")
    plotted = False
    metric_names: set[str] = set()
    handles = []
    for i, run in enumerate(runs):
        colour = colours(i % 10)
        valid_metric = (f"valid/{run.primary}",)
        for ax, kind, keys, style in (
            (ax_loss, "train", TRAIN_LOSS, "--"),
            (ax_loss, "eval", VALID_LOSS, "-"),
            (ax_acc, "train", TRAIN_ACC, "--"),
            (ax_acc, "eval", valid_metric, "-"),
        ):
            xs, ys, key = series(run, kind, keys, x=x)
            if not xs:
                continue
            marker = "o" if kind == "eval" and len(xs) < 30 else None
            ax.plot(xs, ys, style, color=colour, marker=marker, markersize=3, linewidth=1.4)
            plotted = True
            if ax is ax_acc and key:
                metric_names.add(key)
        handles.append(
            Line2D([], [], color=colour, linewidth=2, label=_plain(labels.get(run.name, run.name)))
        )
    if not plotted:
        plt.close(fig)
        return None
    xlabel = "step" if x == "step" else "epoch"
    ax_loss.set(title="loss", xlabel=xlabel, ylabel="loss")
    ax_acc.set(
        title="accuracy / task metric (%)", xlabel=xlabel, ylabel=", ".join(sorted(metric_names))
    )
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    handles += [
        Line2D([], [], color="grey", linestyle="--", label="train (log window)"),
        Line2D([], [], color="grey", linestyle="-", label="valid"),
    ]
    fig.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1, frameon=False
    )
    fig.tight_layout()
    return _save(fig, path)


def confusion(labels: list[str], matrix: list[list[int]], title: str, path: Path) -> Path:
    n = len(labels)
    size = min(3.2 + 0.7 * n, 12)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    top = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(
                j, i, f"{v:,}", ha="center", va="center", color="white" if v > top / 2 else "black"
            )
    tilt = n > 4 or max(len(str(x)) for x in labels) > 6
    ax.set_xticks(
        range(n),
        [_plain(x) for x in labels],
        rotation=30 if tilt else 0,
        ha="right" if tilt else "center",
    )
    ax.set_yticks(range(n), [_plain(x) for x in labels])
    ax.set(xlabel="predicted", ylabel="gold", title=_plain(title))
    fig.tight_layout()
    return _save(fig, path)
