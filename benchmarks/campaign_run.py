"""Run real campaigns of the size the README recommends, end to end, and print their figures.

1. A plain campaign: ``snakemake --cores N`` over V visits (default 12) x a few sensors each,
   under a long output root (the path that once made plot_resources' command line too long).
2. A sharded campaign: ``dc2flow campaign plan --shard-size S`` over W visits (default 20, one
   shard) and ``dc2flow campaign run --profile profiles/local``.

Each visit is a tiny synthetic catalog (radius 0.05 deg), so a sensor renders in seconds: what is
measured is the workflow at campaign scale (jobs, command lines, plan, registry, status), not
rendering. Prints wall times, job counts, the longest shell command Snakemake ran, and checks that
every image, validation table, mosaic, registry row and the resources figure exists.

    python benchmarks/campaign_run.py [--visits 12] [--shard-visits 20] [--cores 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LONG_ROOT = "scratch/campaign/dc2-run2.2i/outputs"


def make_catalogs(folder: Path, visits: list[int]) -> None:
    from dc2flow.synthetic import make_catalog

    for visit in visits:
        make_catalog(outdir=folder, visit=visit, ra_deg=55.0 + 0.01 * (visit % 100), dec_deg=-30.0, band="r",
                     seed=visit, radius_deg=0.05, star_density=2000, galaxy_density=2000)


def run(cmd: list[str], cwd: Path, log: Path) -> float:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed (exit {proc.returncode}): {' '.join(cmd)}\n{log.read_text()[-4000:]}")
    return wall


def check(out: Path, visits: list[int], sensors: list[str], shard: str = "") -> dict:
    images = glob.glob(str(out / "*" / "eimage_*.fits"))
    want = len(visits) * len(sensors)
    assert len(images) == want, f"{len(images)} images, expected {want}"
    for name in ("summary.tsv", "mosaic.png"):
        found = glob.glob(str(out / "validation" / "*" / name))
        assert len(found) == len(visits), f"{len(found)} {name} files, expected {len(visits)}"
    rows = sqlite3.connect(out / "registry.sqlite").execute("select count(*) from images").fetchone()[0]
    assert rows == want, f"{rows} registry rows, expected {want}"
    resources = out / "validation" / (f"{shard}/" if shard else "") / "resources.png"
    assert resources.exists(), f"no {resources}"
    return {"images": len(images), "registry_rows": rows}


def longest_command(log: Path) -> tuple[int, int]:
    """(jobs finished, bytes of the longest shell command) from a Snakemake log run with -p."""
    text = log.read_text()
    steps = re.findall(r"(\d+) of (\d+) steps \(100%\) done", text)
    commands = [len(line.encode()) for line in text.splitlines() if " dc2flow " in f" {line.strip()} "]
    return (int(steps[-1][0]) if steps else 0), max(commands, default=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visits", type=int, default=12, help="visits of the plain campaign")
    ap.add_argument("--shard-visits", type=int, default=20, help="visits of the sharded campaign (one shard)")
    ap.add_argument("--sensors", default="R22_S11,R22_S12", help="sensors of every visit")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", help="work here and keep it (default: a temporary folder, removed)")
    args = ap.parse_args()
    sensors = args.sensors.split(",")
    work = Path(args.keep or tempfile.mkdtemp(prefix="dc2flow-campaign-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        # 1. plain
        visits = list(range(3001, 3001 + args.visits))
        cats, out = work / "plain-cats", work / "plain" / LONG_ROOT
        make_catalogs(cats, visits)
        plain = work / "plain.yaml"
        plain.write_text(f"catalogs: ['{cats}/phosim_cat_*.txt']\nsensors: [{', '.join(sensors)}]\n"
                         f"outdir: {out}\nvalidation: {{mosaic_bin: 64}}\n")
        cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", str(args.cores), "-p",
               "--configfile", str(plain)]
        wall = run(cmd, work, work / "plain.log")
        jobs, longest = longest_command(work / "plain.log")
        figures = check(out, visits, sensors)
        print(f"plain campaign: {args.visits} visits x {len(sensors)} sensors, {jobs} jobs, {wall:.1f} s wall "
              f"(--cores {args.cores}); longest command {longest} bytes; {figures}")

        # 2. sharded: one shard of shard_visits visits through dc2flow campaign run
        visits = list(range(4001, 4001 + args.shard_visits))
        cats, out, cdir = work / "shard-cats", work / "sharded" / LONG_ROOT, work / "campaign"
        make_catalogs(cats, visits)
        base = work / "base.yaml"
        base.write_text(f"sensors: [{sensors[0]}]\nvalidation: {{mosaic_bin: 64}}\n")
        plan = [str(BIN / "dc2flow"), "campaign", "plan", f"{cats}/phosim_cat_*.txt", "--shard-size",
                str(args.shard_visits), "--outdir", str(out), "--dir", str(cdir), "--configfile", str(base)]
        run(plan, REPO, work / "plan.log")
        cmd = [str(BIN / "dc2flow"), "campaign", "run", "--dir", str(cdir), "--profile", "profiles/local", "--",
               "--cores", str(args.cores), "-p"]
        wall = run(cmd, REPO, work / "sharded.log")
        shard_log = cdir / "logs" / "shard-0000.log"
        jobs, longest = longest_command(shard_log)
        figures = check(out, visits, sensors[:1], "shard-0000")
        status = subprocess.run([str(BIN / "dc2flow"), "campaign", "status", "--dir", str(cdir)],
                                capture_output=True, text=True).stdout.strip()
        print(f"sharded campaign: {args.shard_visits} visits x 1 sensor in 1 shard, {jobs} jobs, {wall:.1f} s wall "
              f"(--cores {args.cores}); longest command {longest} bytes; {figures}")
        print(status)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
