"""The study's pictures (matplotlib, no display needed): learning curves, one bar chart per
metric, and where the error map sent the rays.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend) and
written atomically as PNG.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from ..fsio import atomic_file

DPI = 110


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig: Figure, path) -> None:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")


def _band(curves: list[list[dict]], x_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, low, high) of val_psnr over the seeds' curves, at the steps all seeds have."""
    by_step = [{int(r["step"]): r for r in c if "val_psnr" in r} for c in curves if c]
    if not by_step:
        return (np.zeros(0),) * 4
    steps = sorted(set.intersection(*(set(s) for s in by_step)))
    x = np.array([np.mean([s[t][x_key] for s in by_step]) for t in steps], dtype=float)
    y = np.array([[s[t]["val_psnr"] for s in by_step] for t in steps], dtype=float).reshape(len(steps), -1)
    return x, y.mean(1), y.min(1), y.max(1)


def learning_curves(curves: dict[str, list[list[dict]]], path, title: str = "") -> None:
    """Val PSNR against steps (left) and training seconds (right), one line per variant: the mean
    over seeds, the band their range."""
    fig = Figure(figsize=(12, 5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for color, (variant, seeds) in zip(_colors(len(curves)), curves.items(), strict=True):
        for ax, key in zip(axes, ("step", "elapsed_s"), strict=True):
            x, mean, low, high = _band(seeds, key)
            if x.size == 0:
                continue
            ax.plot(x, mean, "-o", ms=3, color=color, label=variant)
            if len(seeds) > 1:
                ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("training time (s, validation excluded)")
    axes[0].set_ylabel("val PSNR (dB, EMA weights, training size)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right", ncol=2)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def bar_chart(stats: dict, metric, path, best: str | None = None, baseline: str | None = None) -> None:
    """One bar per variant: the mean over seeds, error bar +- sd, each seed a dot; the best bar
    outlined, the baseline hatched."""
    variants = list(stats)
    fig = Figure(figsize=(max(6, 0.7 * len(variants) + 2), 4.5), layout="constrained")
    ax = fig.subplots()
    means = [stats[v][metric.key].mean for v in variants]
    sds = [stats[v][metric.key].sd for v in variants]
    colors = _colors(len(variants))
    x = np.arange(len(variants))
    heights = [m if math.isfinite(m) else 0.0 for m in means]
    errs = [s if math.isfinite(s) else 0.0 for s in sds]
    bars = ax.bar(x, heights, yerr=errs, capsize=4, color=colors, alpha=0.75, edgecolor="none")
    for i, v in enumerate(variants):
        vals = stats[v][metric.key].finite
        jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else np.zeros(len(vals))
        ax.plot(x[i] + jitter, vals, "k.", ms=5)
        if v == best:
            bars[i].set_edgecolor("black")
            bars[i].set_linewidth(2.5)
        if v == baseline:
            bars[i].set_hatch("//")
    finite = [m for m in means if math.isfinite(m)]
    if finite and metric.key not in ("train_seconds", "model_mb", "steps_per_s"):
        lo = min(m - (s if math.isfinite(s) else 0) for m, s in zip(means, sds, strict=True) if math.isfinite(m))
        hi = max(m + (s if math.isfinite(s) else 0) for m, s in zip(means, sds, strict=True) if math.isfinite(m))
        pad = max(hi - lo, 1e-6) * 0.6
        ax.set_ylim(lo - pad, hi + pad)  # the differences, not the distance from zero
    ax.set_xticks(x, variants, rotation=35, ha="right")
    direction = "higher" if metric.higher_is_better else "lower"
    ax.set_ylabel(metric.heading)
    ax.set_title(f"{metric.heading}, {direction} is better\nmean ± sd over seeds, dots = seeds; best outlined"
                 + (", baseline hatched" if baseline in stats else ""), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def error_map_picture(npz_path, path, title: str = "") -> None:
    """Where the error map sent the rays: a training frame, its sampling rate per pixel over it,
    and the rate averaged over every training frame over a mean frame (1 = uniform)."""
    with np.load(npz_path) as z:
        data = {k: z[k] for k in z.files}
    if not int(data["enabled"]):
        raise ValueError(f"{npz_path} holds no error map (the run trained without one)")
    fig = Figure(figsize=(13, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    # log scale symmetric about 1 (uniform): red = more rays than uniform, blue = fewer
    from matplotlib.colors import LogNorm

    rates = (data["density_frame"], data["density_mean"])
    spread = max(1.5, *(float(r.max()) for r in rates), *(1 / max(float(r.min()), 1e-3) for r in rates))

    norm = LogNorm(vmin=1 / spread, vmax=spread)
    axes[0].imshow(data["frame"])
    axes[0].set_title(f"training frame {int(data['frame_index'])}")
    axes[1].imshow(data["frame"])
    im = axes[1].imshow(np.clip(data["density_frame"], norm.vmin, norm.vmax), cmap="coolwarm", norm=norm, alpha=0.7)
    axes[1].set_title("its sampling rate at the end of training")
    axes[2].imshow(data["frame_mean"])
    axes[2].imshow(np.clip(data["density_mean"], norm.vmin, norm.vmax), cmap="coolwarm", norm=norm, alpha=0.7)
    axes[2].set_title("mean over all training frames")
    for ax in axes:
        ax.set_axis_off()
    cells = data["cells"].tolist()
    fig.colorbar(im, ax=list(axes[1:]), shrink=0.85,
                 label=f"rays per pixel / uniform rate ({cells[0]}x{cells[1]} cells, "
                       f"{float(data['uniform_share']):.0%} uniform)")
    if title:
        fig.suptitle(title)
    _save(fig, path)
