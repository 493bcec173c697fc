"""How well a calibrated resource model predicts render jobs it was not fitted on.

    python benchmarks/calibrate_holdout.py [--workdir /tmp/cal]

Three synthetic visits (sparse, medium, dense with a bright star) x five R22 sensors are rendered
by Snakemake one job at a time (--cores 1: each benchmark record is one render alone); the model
is fitted on four sensors of each visit and predicts the fifth (R22_S10). Prints, for memory and
wall time, each held-out job's predicted and measured figure and the relative errors. The test
suite checks the memory half (tests/test_calibrate.py); wall times move with the machine's load,
so they are measured here and never asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from dc2flow.calibrate import calibrate, error_figures, read_records
from dc2flow.campaign import image_name
from dc2flow.estimate import FEATURES
from dc2flow.synthetic import make_catalog

REPO = Path(__file__).resolve().parents[1]
SENSORS = ["R22_S01", "R22_S10", "R22_S11", "R22_S12", "R22_S21"]
HELD = "R22_S10"
VISITS = [(300, 1000, []), (2000, 30000, [(40.02, -20.01, 6.0)]), (5000, 80000, [])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", help="keep the run here [default: a temporary folder]")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="dc2flow-cal-")).resolve()
    cats = []
    for visit, (stars, galaxies, bright) in enumerate(VISITS, start=1):
        cats.append(make_catalog(outdir=work / "cats", visit=visit, ra_deg=20.0 + 10 * visit, dec_deg=-20.0,
                                 band="gri"[visit - 1], seed=visit, radius_deg=0.3, star_density=stars,
                                 galaxy_density=galaxies, bright_stars=bright))
    estimates = [f"out/estimates/{v:08d}.tsv" for v in (1, 2, 3)]
    images = [f"out/{v:08d}/{image_name(v, band, d)}" for v, band in zip((1, 2, 3), "gri") for d in SENSORS]
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
                    "--cores", "1", "--config", f"catalogs=[{','.join(cats)}]", f"sensors=[{','.join(SENSORS)}]",
                    "outdir=out", "--", *images, *estimates], check=True, capture_output=True, env=env)
    records = read_records([str(work / "out" / "estimates")], [str(work / "out" / "benchmarks" / "render")])
    train = [r for r in records if r.sensor != HELD]
    held = [r for r in records if r.sensor == HELD]
    model, _ = calibrate(train, holdout=0.0)
    mem, run = model.predict({k: [r.features[k] for r in held] for k in FEATURES})
    print(f"{len(train)} render jobs fitted, {len(held)} held out ({HELD} of each visit); work folder {work}")
    for what, pred, meas, unit in (("memory", mem, [r.mem_gb for r in held], "GB"),
                                   ("wall time", run, [r.runtime_s for r in held], "s")):
        err = error_figures(np.asarray(pred), np.asarray(meas))
        pairs = ", ".join(f"{p:.3g}/{m:.3g}" for p, m in zip(pred, meas))
        print(f"{what:9s} predicted/measured ({unit}): {pairs}; median |err| {err['median_abs']:.1%}, "
              f"max |err| {err['max_abs']:.1%}, within 25%: {err['frac_within_25pct']:.0%}, "
              f"worst under-prediction {err['worst_under']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
