"""Calibrate the resource model from measurements of real render jobs.

Every render job records its wall time and peak RSS (Snakemake's ``benchmark:`` directive writes
``{outdir}/benchmarks/render/{visit}/{band}-{det_name}-det{det_num}.tsv``; the render's own exact
peak, ``….peak.json`` beside it, replaces Snakemake's once-a-second sample: see
:func:`dc2flow.io.read_benchmark`). ``dc2flow calibrate``
joins those records with the same sensors' features (``{outdir}/estimates/{visit}.tsv``), fits the
linear model of :mod:`dc2flow.estimate` by non-negative least squares, then scales it up until a
chosen quantile of the training records is covered (a sensor predicted too small is an
out-of-memory kill; one predicted too large only wastes a little of a node). A deterministic
share of the records (by hash of visit and sensor) is held out to report honest errors.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import os
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .estimate import FEATURES, ResourceModel, read_estimates
from .io import read_benchmark, render_benchmark_key



@dataclass(frozen=True)
class Record:
    """One measured render job with its features."""

    visit: int
    det_name: str
    features: dict
    mem_gb: float
    runtime_s: float


def _expand(paths: list[str], pattern: str) -> list[str]:
    out = []
    for p in paths:
        out += sorted(glob.glob(os.path.join(p, "**", pattern), recursive=True)) if os.path.isdir(p) else [p]
    return out


def read_records(estimates: list[str], benchmarks: list[str]) -> list[Record]:
    """Join benchmark records with estimate features; unmatched records are ignored."""
    feats = {}
    for path in _expand(estimates, "*.tsv"):
        for row in read_estimates(path):
            feats[(row["visit"], row["snap"], row["det_name"])] = {k: row[k] for k in FEATURES}
    records = []
    for path in _expand(benchmarks, "*.tsv"):
        key = render_benchmark_key(path)
        if key is None:
            continue
        if key not in feats:
            continue
        with open(path) as fh:
            header = [h.strip() for h in fh.readline().split("\t")]
        if "s" not in header or "max_rss" not in header:
            raise ConfigError("--benchmarks", path, "not a Snakemake benchmark record (no s/max_rss)",
                              "files written by a rule's benchmark: directive")
        bench = read_benchmark(path)   # the job's exact peak where it left one (X.peak.json)
        if bench["max_rss_mb"] is None or bench["runtime_s"] is None:
            continue   # "NA": the job ended before Snakemake's first memory sample
        records.append(Record(key[0], key[2], feats[key], bench["max_rss_mb"] / 1024.0, bench["runtime_s"]))
    return sorted(records, key=lambda r: (r.visit, r.det_name))


def is_holdout(record: Record, fraction: float) -> bool:
    """Deterministic split: the same record is always held out (or not) for a fraction."""
    h = int.from_bytes(hashlib.blake2b(f"{record.visit}:{record.det_name}".encode(), digest_size=4).digest(), "little")
    return h / 2**32 < fraction


def _fit(x: np.ndarray, y: np.ndarray, quantile: float) -> tuple[float, np.ndarray, float]:
    """Non-negative least squares with an intercept, then a scale covering ``quantile`` of y."""
    from scipy.optimize import nnls

    design = np.column_stack([np.ones(len(y)), x])
    norm = np.maximum(design.max(axis=0), 1e-12)          # equilibrate columns
    coef, _ = nnls(design / norm, y)
    coef = coef / norm
    pred = design @ coef
    ratio = y / np.maximum(pred, 1e-12)
    scale = max(1.0, float(np.quantile(ratio, quantile)))
    return float(coef[0]), coef[1:], scale


def error_figures(pred: np.ndarray, meas: np.ndarray) -> dict:
    """Relative errors (pred - meas) / meas: median |err|, max |err|, fraction under, within 25%."""
    if len(meas) == 0:
        return {"n": 0}
    err = (pred - meas) / meas
    return {"n": int(len(meas)), "median_abs": float(np.median(np.abs(err))), "max_abs": float(np.max(np.abs(err))),
            "frac_under": float(np.mean(err < 0)), "frac_within_25pct": float(np.mean(np.abs(err) <= 0.25)),
            "worst_under": float(min(0.0, err.min()))}


def calibrate(records: list[Record], holdout: float = 0.25, quantile: float = 0.95) -> tuple[ResourceModel, dict]:
    """Fit a :class:`ResourceModel` on the training records; report errors on both sets.

    Raises:
        ConfigError: with too few records to fit.
    """
    train = [r for r in records if not is_holdout(r, holdout)]
    test = [r for r in records if is_holdout(r, holdout)]
    if len(train) < 4:
        raise ConfigError("--benchmarks", len(train), "too few training records to fit the model",
                          "at least 4 render benchmark records matched to estimates")
    x = np.array([[r.features[k] for k in FEATURES] for r in train])
    m0, mc, ms = _fit(x, np.array([r.mem_gb for r in train]), quantile)
    t0, tc, ts = _fit(x, np.array([r.runtime_s for r in train]), quantile)
    model = ResourceModel(
        mem_intercept_gb=m0, runtime_intercept_s=t0,
        mem_coef={k: float(v) for k, v in zip(FEATURES, mc) if v > 0},
        runtime_coef={k: float(v) for k, v in zip(FEATURES, tc) if v > 0},
        mem_scale=ms, runtime_scale=ts,
        meta={"records": len(records), "train": len(train), "holdout": len(test), "quantile": quantile,
              "fitted": datetime.date.today().isoformat()})
    report = {}
    for name, subset in (("train", train), ("holdout", test)):
        if not subset:
            report[name] = {"mem": {"n": 0}, "runtime": {"n": 0}}
            continue
        mem, run = model.predict({k: [r.features[k] for r in subset] for k in FEATURES})
        report[name] = {"mem": error_figures(mem, np.array([r.mem_gb for r in subset])),
                        "runtime": error_figures(run, np.array([r.runtime_s for r in subset]))}
    model = ResourceModel(**{**model.to_dict(), "meta": {**model.meta, "errors": report}})
    return model, report


def plot(records: list[Record], model: ResourceModel, holdout: float, path: str) -> None:
    """Predicted vs measured memory and wall time, training and held-out records, +-25% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem, run = model.predict({k: [r.features[k] for r in records] for k in FEATURES})
    held = np.array([is_holdout(r, holdout) for r in records])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, pred, meas, label in ((axes[0], mem, [r.mem_gb for r in records], "peak memory (GB)"),
                                  (axes[1], run, [r.runtime_s for r in records], "wall time (s)")):
        meas = np.array(meas)
        lim = [0, 1.1 * max(pred.max(), meas.max())]
        ax.fill_between(lim, [0.75 * v for v in lim], [1.25 * v for v in lim], color="0.9", label="±25%")
        ax.plot(lim, lim, "k-", lw=0.8)
        ax.scatter(meas[~held], pred[~held], s=14, label="training")
        ax.scatter(meas[held], pred[held], s=18, marker="s", label="held out")
        ax.set(xlim=lim, ylim=lim, xlabel=f"measured {label}", ylabel=f"predicted {label}")
        ax.legend(loc="upper left")
    fig.suptitle(f"dc2flow resource model: {len(records)} render jobs")
    fig.tight_layout()
    from .io import atomic_output

    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def format_report(report: dict) -> str:
    lines = []
    for name in ("train", "holdout"):
        for what in ("mem", "runtime"):
            e = report[name][what]
            if e.get("n"):
                lines.append(f"{name:8s} {what:8s} n={e['n']:4d} median |err| {e['median_abs']:6.1%}  "
                             f"max |err| {e['max_abs']:6.1%}  under {e['frac_under']:5.1%}  "
                             f"within 25% {e['frac_within_25pct']:6.1%}  worst under {e['worst_under']:+.1%}")
    return "\n".join(lines)
