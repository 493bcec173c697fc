"""How Snakemake's planning of dc2flow grows with the campaign: dry runs of 1, 10, 100, 300 visits x 189 sensors.

    python benchmarks/plan_scale.py                          # 1, 10, 100, 300 visits; both states; bare
    python benchmarks/plan_scale.py --visits 1 10 100 --states fresh --workdir /tmp/plan
    python benchmarks/plan_scale.py --visits 100 --states fresh bare --repeat 3   # the ratio target

For each campaign size it times ``snakemake -n`` (``/usr/bin/time -v``: wall, user CPU, peak RSS)
on the pipeline's Snakefile in two states, and on a bare Snakefile of the same shape:

- ``fresh``: nothing made yet, as a campaign's first dry run: one parse, partition, estimate,
  validation, mosaic and registration job per visit and one render job per sensor, before the
  bundling checkpoint (renders not yet grouped).
- ``planned``: the catalog, partition and estimate outputs present (empty stand-ins, estimates
  with varied synthetic demands) and the bundle plan made by ``dc2flow bundle`` from them for a
  site's node (``--node``; Perlmutter's by default), as on a restart after the checkpoint: renders grouped into bundles, each with its resources read
  from the plan, plus one ``finish_bundle`` job per bundle.
- ``shape``: a bare Snakefile of the pipeline's shape: the same rules, with the same input,
  output, log and benchmark files per visit and per sensor and the checkpoint before the renders,
  each job a ``touch`` (no params, resources, groups or dc2flow code): the floor Snakemake itself
  sets for this DAG, so ``fresh/shape`` is what dc2flow adds to it (target <= 1.5x).
- ``bare``: a minimal Snakefile with one job per visit and one per sensor (one input, one output,
  a ``touch``), the floor for a DAG of that many jobs at all.

The catalogs are copies of one small synthetic catalog with their own visit numbers (planning
reads only headers). Nothing is rendered. Figures depend on the machine: compare the rows of one
run, not runs on different machines.  With ``--repeat N`` the states run N times, interleaved
(fresh, planned, bare, fresh, ...), and each state's median wall time is printed beside the bare
Snakefile's with their ratio (target: fresh and planned <= 1.5x shape at 100 visits).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DC2FLOW = shutil.which("dc2flow") or "dc2flow"
BARE = """\
V = [f"{v:08d}" for v in range(1, int(config["nvis"]) + 1)]
S = [f"R{r}{c}_S{a}{b}" for r, c in [(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 0), (2, 1), (2, 2), (2, 3),
                                      (2, 4), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4), (0, 1), (0, 2), (0, 3),
                                      (4, 1), (4, 2), (4, 3)] for a in range(3) for b in range(3)]


rule all:
    input:
        expand("out/{v}/{s}.fits", v=V, s=S),


rule parse:
    output:
        "cat/{v}.json",
    shell:
        "touch {output}"


rule render:
    input:
        "cat/{v}.json",
    output:
        "out/{v}/{s}.fits",
    shell:
        "touch {output}"
"""


SHAPE = """\
# The pipeline's DAG with nothing of dc2flow: the same rules, files, logs and benchmarks per visit
# and per sensor, and a checkpoint before the renders, each job a `touch`.
V = [f"{v:08d}" for v in range(1, int(config["nvis"]) + 1)]
S = [f"R{r}{c}_S{a}{b}" for r, c in [(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 0), (2, 1), (2, 2), (2, 3),
                                      (2, 4), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4), (0, 1), (0, 2), (0, 3),
                                      (4, 1), (4, 2), (4, 3)] for a in range(3) for b in range(3)]
NUM = {s: i for i, s in enumerate(S)}


def img(v, s):
    return f"out/{v}/eimage_{v}-0-r-{s}-det{NUM[s]:03d}.fits"


def members(wildcards):
    checkpoints.bundle.get()
    return [img(v, s) for v in V for s in S]


rule all:
    input:
        [img(v, s) for v in V for s in S],
        "out/bundles/done/b0000.tsv",
        expand("out/validation/{v}/{f}", v=V, f=["summary.tsv", "summary.png", "mosaic.png"]),
        "out/validation/resources.png",
        expand("out/registry/visits/{v}.tsv", v=V),


rule parse:
    output: "out/catalog/{v}/visit.json", "out/catalog/{v}/objects.parquet", "out/catalog/{v}/sources.json"
    log: "out/logs/catalog/{v}.log"
    benchmark: "out/benchmarks/catalog/{v}.tsv"
    shell: "touch {output}"


rule partition:
    input: "out/catalog/{v}/visit.json", "out/catalog/{v}/objects.parquet"
    output: "out/partitions/{v}/index.tsv"
    log: "out/logs/partition/{v}.log"
    benchmark: "out/benchmarks/partition/{v}.tsv"
    shell: "touch {output}"


rule estimate:
    input: "out/catalog/{v}/visit.json", "out/partitions/{v}/index.tsv"
    output: "out/estimates/{v}.tsv"
    log: "out/logs/estimate/{v}.log"
    benchmark: "out/benchmarks/estimate/{v}.tsv"
    shell: "touch {output}"


checkpoint bundle:
    input: expand("out/estimates/{v}.tsv", v=V)
    output: "out/bundles/campaign.csv", "out/bundles/campaign.json"
    log: "out/logs/bundle/campaign.log"
    benchmark: "out/benchmarks/bundle/campaign.tsv"
    shell: "touch {output}"


rule render:
    input: "out/partitions/{v}/index.tsv", ancient("out/bundles/campaign.csv")
    output:
        "out/{v}/eimage_{v}-0-{b}-{s}-det{n}.fits",
        "out/{v}/centroid_{v}-0-{b}-{s}-det{n}.txt.gz",
        "out/registry/records/{v}/{b}-{s}-det{n}.json",
    log: "out/logs/render/{v}/{b}-{s}-det{n}.log"
    benchmark: "out/benchmarks/render/{v}/{b}-{s}-det{n}.tsv"
    shell: "touch {output}"


rule finish:
    input: members
    output: "out/bundles/done/{bundle}.tsv"
    shell: "touch {output}"


rule validate:
    input: lambda w: [img(w.v, s) for s in S]
    output:
        [f"out/validation/{{v}}/{s}.json" for s in S],
        [f"out/validation/{{v}}/{s}.tsv" for s in S],
        "out/validation/{v}/summary.tsv",
        "out/validation/{v}/summary.png",
    log: "out/logs/validation/{v}.log"
    benchmark: "out/benchmarks/validation/{v}.tsv"
    shell: "touch {output}"


rule mosaic:
    input: lambda w: [img(w.v, s) for s in S]
    output: "out/validation/{v}/mosaic.png"
    log: "out/logs/validation/{v}/mosaic.log"
    benchmark: "out/benchmarks/validation/{v}/mosaic.tsv"
    shell: "touch {output}"


rule resources:
    input: "out/bundles/campaign.csv", expand("out/validation/{v}/summary.tsv", v=V)
    output: "out/validation/resources.png"
    shell: "touch {output}"


rule register:
    input: lambda w: [f"out/registry/records/{w.v}/r-{s}-det{NUM[s]:03d}.json" for s in S], "out/validation/{v}/summary.tsv"
    output: "out/registry/visits/{v}.tsv"
    log: "out/logs/registry/{v}.log"
    benchmark: "out/benchmarks/registry/{v}.tsv"
    shell: "touch {output}"
"""


def timed(cmd: list[str], cwd: Path) -> dict:
    """Run under /usr/bin/time -v; wall s, user s, peak RSS MB and the dry run's job total."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    err = proc.stderr

    def field(name: str) -> str:
        return re.search(rf"{re.escape(name)}: (.+)", err).group(1).strip()

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
    total = re.search(r"^total\s+(\d+)", proc.stdout, re.M)
    renders = re.search(r"^render\w*\s+(\d+)", proc.stdout, re.M)
    return {"wall_s": seconds, "user_s": float(field("User time (seconds)")),
            "rss_mb": int(field("Maximum resident set size (kbytes)")) / 1024,
            "jobs": int(total.group(1)) if total else -1, "renders": int(renders.group(1)) if renders else -1}


def make_catalogs(root: Path, n: int) -> list[str]:
    """n catalogs: one small synthetic catalog and copies of its header with other visit numbers."""
    cats = root / "catalogs"
    if not (cats / "phosim_cat_1.txt").exists():
        subprocess.run([DC2FLOW, "make-catalog", "--outdir", str(cats), "--visit", "1",
                        "--ra-deg", "55", "--dec-deg", "-30", "--band", "r", "--seed", "1",
                        "--star-density", "10", "--galaxy-density", "10"], check=True, capture_output=True)
    text = (cats / "phosim_cat_1.txt").read_text()
    paths = []
    for v in range(1, n + 1):
        path = cats / f"phosim_cat_{v}.txt"
        if not path.exists():
            path.write_text(re.sub(r"^obshistid 1$", f"obshistid {v}", text, flags=re.M))
        paths.append(str(path))
    return paths


def write_config(path: Path, catalogs: list[str], outdir: Path) -> None:
    lines = ["catalogs:"] + [f"  - {c}" for c in catalogs] + [f"outdir: {outdir}"]
    path.write_text("\n".join(lines) + "\n")


def make_planned(outdir: Path, n: int, node: list[str]) -> None:
    """Stand-ins for the outputs before the checkpoint, synthetic estimates, and the real plan."""
    from dc2flow import camera
    from dc2flow.estimate import FEATURES, write_estimates

    rng = np.random.default_rng(1)
    estimates = []
    for v in range(1, n + 1):
        vd = f"{v:08d}"
        for name in ("visit.json", "objects.parquet", "sources.json"):
            (outdir / "catalog" / vd).mkdir(parents=True, exist_ok=True)
            (outdir / "catalog" / vd / name).touch()
        (outdir / "partitions" / vd).mkdir(parents=True, exist_ok=True)
        (outdir / "partitions" / vd / "index.tsv").touch()
        density = rng.lognormal(0.0, 0.5)
        rows = []
        for det in camera.DET_NAMES:
            mem = float(np.clip(0.25 + 0.6 * density * rng.lognormal(0.0, 0.35), 0.55, 4.0))
            rows.append({"visit": v, "det_name": det, "mem_gb": round(mem, 4),
                         "runtime_s": round(300.0 + 900.0 * mem * rng.lognormal(0.0, 0.3), 1),
                         **{f: 0.0 for f in FEATURES}})
        path = outdir / "estimates" / f"{vd}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_estimates(path, rows)
        estimates.append(str(path))
    time.sleep(0.05)
    (outdir / "bundles").mkdir(parents=True, exist_ok=True)
    subprocess.run([DC2FLOW, "bundle", *estimates, *node, "--out",
                    str(outdir / "bundles" / "campaign.csv"), "--summary", str(outdir / "bundles" / "campaign.json")],
                   check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visits", nargs="+", type=int, default=[1, 10, 100, 300])
    ap.add_argument("--states", nargs="+", choices=["fresh", "planned", "bare", "shape"],
                    default=["fresh", "planned", "bare", "shape"])
    ap.add_argument("--workdir", help="keep catalogs and stand-ins here [default: a temporary folder]")
    ap.add_argument("--node", default="--node-memory-gb 480 --node-cores 128 --visit-overhead-gb 0.5 "
                                      "--time-limit-s 43200 --solver auto --solve-time-limit-s 20",
                    help="dc2flow bundle options for the planned state [default: a Perlmutter CPU node, as "
                         "profiles/perlmutter/node.yaml; config/config.yaml's small 16 GB / 4-core default "
                         "makes ~25 bundles, so ~25 more jobs, per visit]")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each state, interleaved [default: 1]")
    args = ap.parse_args(argv)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="dc2flow-plan-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    snakemake = shutil.which("snakemake") or sys.exit("snakemake is not on PATH")
    print(f"snakemake -n, {os.cpu_count()} CPUs; work folder {root}")
    print(f"{'state':8s} {'visits':>6s} {'renders':>8s} {'jobs':>7s} {'wall s':>8s} {'user s':>8s} {'RSS MB':>8s}")
    for n in args.visits:
        catalogs = make_catalogs(root, n)
        walls: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for state in args.states:
                if state in ("bare", "shape"):
                    work = root / f"{state}-{n}"
                    work.mkdir(exist_ok=True)
                    (work / "Snakefile").write_text(BARE if state == "bare" else SHAPE)
                    cmd = [snakemake, "-n", "--cores", "2", "--config", f"nvis={n}"]
                else:
                    work = root / f"{state}-{n}"
                    if work.exists():
                        shutil.rmtree(work)
                    work.mkdir()
                    write_config(work / "config.yaml", catalogs, work / "out")
                    if state == "planned":
                        make_planned(work / "out", n, args.node.split())
                    cmd = [snakemake, "-s", str(REPO / "Snakefile"), "-n", "--cores", "2", "--configfile", "config.yaml"]
                r = timed(cmd, work)
                walls.setdefault(state, []).append(r["wall_s"])
                walls.setdefault(state + ":user", []).append(r["user_s"])
                print(f"{state:8s} {n:6d} {r['renders']:8d} {r['jobs']:7d} {r['wall_s']:8.2f} {r['user_s']:8.2f} "
                      f"{r['rss_mb']:8.0f}", flush=True)
        for floor in ("shape", "bare"):
            if floor not in walls:
                continue
            base = float(np.median(walls[floor]))
            for state in (s for s in args.states if s in ("fresh", "planned")):
                med = float(np.median(walls[state]))
                cpu, cpu_base = float(np.median(walls[state + ":user"])), float(np.median(walls[floor + ":user"]))
                print(f"ratio    {n:6d} {state}/{floor}: median wall {med:.2f} s / {base:.2f} s = {med / base:.2f}x, "
                      f"user CPU {cpu:.2f} s / {cpu_base:.2f} s = {cpu / cpu_base:.2f}x ({args.repeat} runs each, "
                      f"interleaved)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
