"""Stage ``study``: the study's table, its plain-words reading, and the plots.

Per subject, from every variant's and seed's ``metrics.json`` (:mod:`.metrics`) and
``curve.csv`` (:mod:`.head`), ``write_study`` writes into ``results/<subject>/study/``:

- ``table.csv``: one row per variant: ``variant``, ``changes`` (its overrides), ``seeds``,
  and per metric ``<m>_mean``, ``<m>_sd`` (sample standard deviation over the seeds, empty
  with one seed), ``<m>_n`` (seeds with a number), ``<m>_best`` (1 on the best variant)
- ``table.md`` and ``table.html``: the same as mean +- sd with the best per metric in bold,
  then one statement per metric: which variants differ from the best (and from the
  baseline) by more than the seed-to-seed spread
- ``learning_curves.png``, ``bars/<metric>.png``, ``error_maps/<variant>.png`` (:mod:`.plots`)

"More than the seed-to-seed spread" means the two ``mean +- sd`` ranges do not overlap:
``|mean_a - mean_b| > sd_a + sd_b``. It is a screen for differences that the choice of
seed alone does not explain, not a significance test.
"""

from __future__ import annotations

import csv
import html
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fsio import atomic_dir, atomic_file, read_json
from . import plots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    fmt: str
    unit: str = ""

    @property
    def heading(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


METRICS = (
    Metric("psnr", "PSNR", True, ".2f", "dB"),
    Metric("psnr_head", "head-box PSNR", True, ".2f", "dB"),
    Metric("ssim", "SSIM", True, ".4f"),
    Metric("lpips", "LPIPS", False, ".4f"),
    Metric("lmd", "LMD", False, ".3f", "px"),
    Metric("mouth_corr_truth", "mouth corr", True, ".3f"),
    Metric("audio_envelope_corr", "audio corr", True, ".3f"),
    Metric("train_seconds", "train time", False, ".1f", "s"),
    Metric("steps_per_s", "steps/s", True, ".2f"),
    Metric("model_mb", "model size", False, ".2f", "MB"),
)
NOTES = {
    "mouth_corr_truth": "rendered vs real mouth opening over the val frames",
    "audio_envelope_corr": "rendered mouth opening vs the audio's loudness (best lag within 2 frames)",
    "train_seconds": "CPU time depends on what else ran on the machine",
    "steps_per_s": "CPU time depends on what else ran on the machine",
}


def metric_value(metrics: dict, key: str) -> float:
    """A metric of a ``metrics.json`` as a float (NaN when absent): top level or ``lipsync``;
    a value given with an interval (``{"r": ..}`` / ``{"mean": ..}``) counts as its estimate."""
    value = metrics.get(key, (metrics.get("lipsync") or {}).get(key))
    if isinstance(value, dict):
        value = next((value[k] for k in ("r", "mean", "value") if k in value), None)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return value if math.isfinite(value) else float("nan")


@dataclass
class Stat:
    values: list[float]

    @property
    def finite(self) -> list[float]:
        return [v for v in self.values if math.isfinite(v)]

    @property
    def n(self) -> int:
        return len(self.finite)

    @property
    def mean(self) -> float:
        return float(np.mean(self.finite)) if self.finite else float("nan")

    @property
    def sd(self) -> float:
        return float(np.std(self.finite, ddof=1)) if self.n >= 2 else float("nan")


def aggregate(runs: dict[str, list[dict]]) -> dict[str, dict[str, Stat]]:
    """variant -> metric key -> the seeds' values."""
    return {v: {m.key: Stat([metric_value(r, m.key) for r in rs]) for m in METRICS} for v, rs in runs.items()}


def best_variant(stats: dict[str, dict[str, Stat]], metric: Metric) -> str | None:
    scored = [(s[metric.key].mean, v) for v, s in stats.items() if math.isfinite(s[metric.key].mean)]
    if not scored:
        return None
    pick = max if metric.higher_is_better else min
    return pick(scored, key=lambda t: t[0])[1]


def beyond_spread(a: Stat, b: Stat, metric: Metric | None = None) -> bool | None:
    """True when the mean +- sd ranges of a and b do not overlap; None without two seeds each.
    With ``metric``, a difference too small to show in its format (a model size that differs
    by bytes, with no spread at all) is no difference."""
    if a.n < 2 or b.n < 2:
        return None
    diff = abs(a.mean - b.mean)
    if metric is not None and float(format(diff, metric.fmt)) == 0:
        return False
    return diff > a.sd + b.sd


def _fmt(value: float, metric: Metric) -> str:
    return format(value, metric.fmt) if math.isfinite(value) else "n/a"


def _signed(value: float, metric: Metric) -> str:
    return ("+" if value >= 0 else "-") + format(abs(value), metric.fmt)


def _cell(stat: Stat, metric: Metric) -> str:
    if not math.isfinite(stat.mean):
        return "n/a"
    return _fmt(stat.mean, metric) + (f" ± {_fmt(stat.sd, metric)}" if stat.n >= 2 else "")


def shown_metrics(stats: dict[str, dict[str, Stat]]) -> list[Metric]:
    """The metrics with a number for at least one variant (LPIPS needs its weights)."""
    return [m for m in METRICS if any(s[m.key].n for s in stats.values())]


def statements(stats: dict[str, dict[str, Stat]], baseline: str | None = None) -> list[str]:
    """One plain sentence group per metric: the best variant, and which variants differ from
    it (and from ``baseline``) by more than the seed-to-seed spread (markdown)."""
    out = []
    for m in shown_metrics(stats):
        best = best_variant(stats, m)
        direction = "higher" if m.higher_is_better else "lower"
        b = stats[best][m.key]
        text = f"**{m.heading}** ({direction} is better): best `{best}` ({_cell(b, m)})."
        others = [v for v in stats if v != best and math.isfinite(stats[v][m.key].mean)]
        verdicts = {v: beyond_spread(b, stats[v][m.key], m) for v in others}
        if not others:
            out.append(text + " No other variant has a number.")
            continue
        if any(x is None for x in verdicts.values()):
            out.append(text + " Fewer than two seeds per variant: no seed-to-seed spread, so no difference is "
                              "assessed.")
            continue
        apart = [v for v in others if verdicts[v]]
        close = [v for v in others if not verdicts[v]]
        if apart:
            text += " Behind it by more than the seed-to-seed spread: " + ", ".join(
                f"`{v}` ({_signed(stats[v][m.key].mean - b.mean, m)})" for v in apart) + "."
        if close:
            text += (" Within the spread of the best (not told apart by these seeds): "
                     + ", ".join(f"`{v}`" for v in close) + ".")
        else:
            text += " Every other variant is behind it by more than the spread."
        if baseline in stats and baseline != best and math.isfinite(stats[baseline][m.key].mean):
            base = stats[baseline][m.key]
            better, worse = [], []
            for v in others + [best]:
                if v == baseline or not beyond_spread(base, stats[v][m.key], m):
                    continue
                delta = stats[v][m.key].mean - base.mean
                (better if (delta > 0) == m.higher_is_better else worse).append(f"`{v}` ({_signed(delta, m)})")
            text += f" Against the baseline `{baseline}`: " + (
                "better beyond the spread: " + ", ".join(better) if better else "none better beyond the spread")
            text += "; " + ("worse beyond the spread: " + ", ".join(worse) if worse else "none worse beyond the spread")
            text += "."
        out.append(text)
    return out


def describe(overrides: dict) -> str:
    """A variant's overrides as one short line: ``loss=l1, error_map=false, grids.levels=16``."""
    parts = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k in sorted(value):
                walk(f"{prefix}.{k}" if prefix else k, value[k])
        else:
            parts.append(f"{prefix}={str(value).lower() if isinstance(value, bool) else value}")

    walk("", overrides or {})
    return ", ".join(parts) if parts else "(none: the base config)"


def _read_runs(runs: dict) -> tuple[dict[str, list[dict]], dict[str, list[list[dict]]]]:
    metrics, curves = {}, {}
    for variant, seeds in runs.items():
        ordered = sorted(seeds.items(), key=lambda kv: int(kv[0]))
        metrics[variant] = [read_json(p["metrics"]) for _, p in ordered]
        curves[variant] = [read_curve(p["curve"]) for _, p in ordered]
    return metrics, curves


def read_curve(path) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]


def write_csv(path, stats, variants: dict, seeds: dict[str, int]) -> None:
    best = {m.key: best_variant(stats, m) for m in METRICS}
    columns = ["variant", "changes", "seeds"] + [f"{m.key}_{x}" for m in METRICS for x in ("mean", "sd", "n", "best")]
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for v, s in stats.items():
            row = [v, describe(variants.get(v)), seeds[v]]
            for m in METRICS:
                st = s[m.key]
                row += [f"{st.mean:.6g}" if math.isfinite(st.mean) else "",
                        f"{st.sd:.6g}" if math.isfinite(st.sd) else "", st.n, int(best[m.key] == v)]
            w.writerow(row)


def _header_lines(subject: str, stats, seeds: dict[str, int], baseline: str | None) -> list[str]:
    n = sorted(set(seeds.values()))
    return [f"Study of subject `{subject}`: {len(stats)} variants, {'/'.join(map(str, n))} seed(s) each; "
            "the same data, step budget and val split for all. Cells are mean ± sample standard deviation "
            "over the seeds; the best variant per metric is in bold."
            + (f" Baseline: `{baseline}`." if baseline in stats else "")]


RULE_TEXT = ("A difference is \"beyond the seed-to-seed spread\" when the two mean ± sd ranges do not "
             "overlap (|mean_a − mean_b| > sd_a + sd_b): the choice of seed alone does not explain it. "
             "This is a screen, not a significance test; with a few seeds, a difference within the spread "
             "is not shown to be absent, only not shown.")


def write_markdown(path, subject: str, stats, variants: dict, seeds: dict[str, int], baseline: str | None,
                   notes: list[str]) -> None:
    shown = shown_metrics(stats)
    best = {m.key: best_variant(stats, m) for m in shown}
    lines = [f"# Study: {subject}", "", *_header_lines(subject, stats, seeds, baseline), ""]
    lines.append("| variant | changes | " + " | ".join(m.heading for m in shown) + " |")
    lines.append("|---|---|" + "---:|" * len(shown))
    for v, s in stats.items():
        cells = [f"**{_cell(s[m.key], m)}**" if best[m.key] == v else _cell(s[m.key], m) for m in shown]
        lines.append(f"| `{v}` | {describe(variants.get(v))} | " + " | ".join(cells) + " |")
    lines += ["", "## What differs by more than the seed-to-seed spread", "", RULE_TEXT, ""]
    lines += [f"- {t}" for t in statements(stats, baseline)]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes] + [""]
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines))


def _md_inline_to_html(text: str) -> str:
    """The statements' markdown (``**x**``, ```x```) as HTML."""
    out, parts = [], html.escape(text).split("**")
    for i, part in enumerate(parts):
        code = part.split("`")
        part = "".join(f"<code>{c}</code>" if j % 2 else c for j, c in enumerate(code))
        out.append(f"<b>{part}</b>" if i % 2 else part)
    return "".join(out)


def write_html(path, subject: str, stats, variants: dict, seeds: dict[str, int], baseline: str | None,
               notes: list[str]) -> None:
    shown = shown_metrics(stats)
    best = {m.key: best_variant(stats, m) for m in shown}
    head = "".join(f"<th>{html.escape(m.heading)}<br><small>{'higher' if m.higher_is_better else 'lower'} "
                   "is better</small></th>" for m in shown)
    rows = []
    for v, s in stats.items():
        cells = "".join(f'<td class="best">{_cell(s[m.key], m)}</td>' if best[m.key] == v
                        else f"<td>{_cell(s[m.key], m)}</td>" for m in shown)
        rows.append(f"<tr><th><code>{html.escape(v)}</code></th><td class='changes'>"
                    f"{html.escape(describe(variants.get(v)))}</td>{cells}</tr>")
    doc = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Study: {html.escape(subject)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }}
td.changes {{ text-align: left; white-space: normal; max-width: 22em; }}
td.best {{ font-weight: bold; background: #e3f2e1; }}
li {{ margin-bottom: 0.5em; max-width: 70em; }}
</style></head><body>
<h1>Study: {html.escape(subject)}</h1>
<p>{_md_inline_to_html(_header_lines(subject, stats, seeds, baseline)[0])}</p>
<table><tr><th>variant</th><th>changes</th>{head}</tr>
{chr(10).join(rows)}
</table>
<h2>What differs by more than the seed-to-seed spread</h2>
<p>{_md_inline_to_html(RULE_TEXT)}</p>
<ul>{"".join(f"<li>{_md_inline_to_html(t)}</li>" for t in statements(stats, baseline))}</ul>
<h2>Notes</h2>
<ul>{"".join(f"<li>{_md_inline_to_html(n)}</li>" for n in notes)}</ul>
</body></html>
"""
    with atomic_file(path) as tmp:
        tmp.write_text(doc)


def _notes(metrics: dict[str, list[dict]]) -> list[str]:
    first = next(r for rs in metrics.values() for r in rs)
    notes = [f"Measured on the first {first['frames']} val frames at {first['size'][1]}x{first['size'][0]} px, "
             "the head over its training background (torso image over `bc.jpg`)."]
    if first.get("lpips_unavailable"):
        notes.append(f"LPIPS not measured: {first['lpips_unavailable']}.")
    notes += [f"{m.heading}: {NOTES[m.key]}." for m in METRICS if m.key in NOTES]
    return notes


def write_study(*, subject: str, runs: dict, variants: dict, baseline: str | None, error_maps: dict,
                table_csv, table_md, table_html, curves_png, bars_dir, error_maps_dir) -> dict:
    """One subject's study outputs from ``runs`` (variant -> seed -> {metrics, curve} paths),
    ``variants`` (variant -> overrides) and ``error_maps`` (variant -> error_map.npz)."""
    metrics, curves = _read_runs(runs)
    stats = aggregate(metrics)
    seeds = {v: len(rs) for v, rs in metrics.items()}
    notes = _notes(metrics)
    write_csv(table_csv, stats, variants, seeds)
    write_markdown(table_md, subject, stats, variants, seeds, baseline, notes)
    write_html(table_html, subject, stats, variants, seeds, baseline, notes)
    plots.learning_curves(curves, curves_png, title=f"{subject}: val PSNR during training (mean, range over seeds)")
    with atomic_dir(bars_dir) as tmp:
        for m in shown_metrics(stats):
            plots.bar_chart(stats, m, Path(tmp) / f"{m.key}.png", best=best_variant(stats, m), baseline=baseline)
    with atomic_dir(error_maps_dir) as tmp:
        for variant, npz in error_maps.items():
            plots.error_map_picture(npz, Path(tmp) / f"{variant}.png", title=f"{subject}: {variant}")
    log.info("%s: study table of %d variants x %s seeds -> %s", subject, len(stats), sorted(set(seeds.values())),
             table_md)
    return {m.key: best_variant(stats, m) for m in shown_metrics(stats)}


def write_studies(*, studies: dict[str, dict]) -> dict:
    """``write_study`` for each subject (the ``study`` rule makes every subject's table)."""
    return {subject: write_study(subject=subject, **kwargs) for subject, kwargs in studies.items()}
