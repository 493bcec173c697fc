"""Campaign progress from the files a run leaves, without the database: per exposure (a snap of a
visit, :class:`dc2flow.campaign.Exposure`), which sensors are done, failed, running or missing
(``dc2flow status``).  The stage files of an exposure are under its key (``00449053`` for snap 0,
``00449053-1`` for snap 1); its images are those of the visit's folder with its snap in the name.

Expected sensors come from the bundle plans (else the partitions, else the images); a sensor is
*done* when its image is there, *failed* when a failure record or a render log says so, *running*
while Snakemake's ``.snakemake/incomplete`` markers name its image, and *missing* otherwise.  A
visit not in any plan yet shows the pre-render stage it failed at (catalog, partition, estimate).
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from typing import Sequence

from .camera import N_SCIENCE_SENSORS
from .campaign import EXPOSURE_KEY_REGEX, Exposure, parse_exposure
from .io import read_benchmark
from .registry import IMAGE_RE, utc_now
from .smk import incomplete_outputs

PRE_RENDER_STAGES = ("catalog", "partition", "estimate")


_KEY_NAME = re.compile(rf"({EXPOSURE_KEY_REGEX})(?:\.[a-z]+)?")


def _key_dirs(root: str) -> list[str]:
    """The exposure-key folders under ``root`` (``00449053``, ``00449053-1``), sorted."""
    return sorted(glob.glob(os.path.join(glob.escape(root), "[0-9]" * 8))
                  + glob.glob(os.path.join(glob.escape(root), "[0-9]" * 8 + "-[1-9]*")))


@dataclass
class VisitStatus:
    visit: int
    snap: int = 0
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stage: str = ""          # e.g. "failed before rendering: catalog"; "" once the visit is in the plan
    n_unnamed: int = 0       # sensors counted for a visit with no plan rows yet, whose names are unknown
    unnamed_as: str = "missing"  # ... as "failed", "running" or "missing"

    @property
    def expected(self) -> int:
        return len(self.done) + len(self.failed) + len(self.running) + len(self.missing) + self.n_unnamed


def expected_sensors(outdir: str | os.PathLike) -> tuple[dict[Exposure, list[str]], dict[tuple[Exposure, str], str], str]:
    """exposure -> det_names expected, (exposure, det_name) -> bundle, and where the list came from.

    From the bundle plans (``bundles/campaign.csv``, and ``bundles/{shard}/campaign.csv`` of a
    sharded campaign, whose bundles are named ``{shard}/{bundle}``) when one exists, else from the
    partition files (``partitions/{visit}/{det_name}.parquet``), else from the images present.
    """
    from .packing import read_plan

    out: dict[Exposure, list[str]] = {}
    bundles: dict[tuple[Exposure, str], str] = {}
    plans = bundle_plans(outdir)
    if plans:
        for prefix, plan in plans:
            for row in read_plan(plan):
                out.setdefault(Exposure(row.visit, row.snap), []).append(row.det_name)
                bundles[(Exposure(row.visit, row.snap), row.det_name)] = prefix + row.bundle
        return out, bundles, "bundle plan" if len(plans) == 1 else f"{len(plans)} bundle plans"
    parts = [p for d in _key_dirs(os.path.join(outdir, "partitions"))
             for p in sorted(glob.glob(os.path.join(glob.escape(d), "R??_S??.parquet")))]
    source = "partitions"
    if not parts:
        parts = sorted(glob.glob(os.path.join(outdir, "[0-9]" * 8, "eimage_*.fits")))
        source = "images"
    for path in parts:
        name = os.path.basename(path)
        m = IMAGE_RE.match(name)
        exposure = Exposure(int(m.group(1)), int(m.group(2))) if m else parse_exposure(os.path.basename(os.path.dirname(path)))
        out.setdefault(exposure, []).append(m.group(4) if m else name[:7])
    return dict(sorted(out.items())), bundles, source


def _first(pattern: str) -> str | None:
    found = sorted(glob.glob(pattern))
    return found[0] if found else None


def _finished_after(bench: str | None, log: str) -> bool:
    """The benchmark record was written after the log: the job that wrote this log succeeded."""
    return bench is not None and os.path.getmtime(bench) >= os.path.getmtime(log)


def _pre_render_state(outdir: str, exposure: Exposure, markers: set[str]) -> tuple[str, str] | None:
    """("failed" | "running", stage) of an exposure's catalog/partition/estimate jobs; None: none ran or all ended."""
    vd = exposure.key
    real = os.path.realpath(outdir)
    made = {"catalog": os.path.join(real, "catalog", vd) + os.sep,
            "partition": os.path.join(real, "partitions", vd) + os.sep,
            "estimate": os.path.join(real, "estimates", f"{vd}.tsv")}
    for stage in PRE_RENDER_STAGES:
        if os.path.exists(os.path.join(outdir, "failures", stage, f"{vd}.json")):
            return "failed", stage
        if any(m.startswith(made[stage]) or m == made[stage] for m in markers):
            return "running", stage
        log = os.path.join(outdir, "logs", stage, f"{vd}.log")
        bench = os.path.join(outdir, "benchmarks", stage, f"{vd}.tsv")
        if os.path.exists(log) and not _finished_after(bench if os.path.exists(bench) else None, log):
            return "failed", stage   # a log, no marker, no newer benchmark: killed or failed
    return None


def bundle_plans(outdir: str | os.PathLike) -> list[tuple[str, str]]:
    """(bundle-name prefix, path) of every bundle plan under ``outdir``: ``("", bundles/campaign.csv)``
    and ``("{shard}/", bundles/{shard}/campaign.csv)`` for each shard of a sharded campaign."""
    top = os.path.join(os.fspath(outdir), "bundles")
    found = [("", os.path.join(top, "campaign.csv"))] if os.path.exists(os.path.join(top, "campaign.csv")) else []
    for path in sorted(glob.glob(os.path.join(top, "*", "campaign.csv"))):
        found.append((os.path.basename(os.path.dirname(path)) + "/", path))
    return found


def _known_visits(outdir: str) -> set[Exposure]:
    """Exposures named by a catalog/partition/estimate log or failure record newer than the bundle plan.

    Files older than the plan belong to visits the plan was made without: an earlier campaign's
    (the plan is only made once every visit has its estimates). With several plans (shards), the
    oldest counts.
    """
    plans = bundle_plans(outdir)
    since = min((os.path.getmtime(p) for _, p in plans), default=float("-inf"))
    found = set()
    for stage in PRE_RENDER_STAGES:
        for path in glob.glob(os.path.join(outdir, "logs", stage, "[0-9]" * 8 + "*.log")) + \
                glob.glob(os.path.join(outdir, "failures", stage, "[0-9]" * 8 + "*.json")):
            m = _KEY_NAME.fullmatch(os.path.basename(path))
            if m and os.path.getmtime(path) >= since:
                found.add(parse_exposure(m.group(1)))
    return found


def campaign_status(outdir: str | os.PathLike, workdir: str | os.PathLike | Sequence[str | os.PathLike] = ".") -> dict:
    """Progress of a campaign from its files: per exposure done/failed/running/missing sensors and totals.

    A sensor is

    - *done* when its FITS image exists;
    - *failed* when its failure record (``failures/render/{key}_{band}_{det_name}_{det_num}.json``,
      written by ``dc2flow --failure-record`` on a science error) exists, or when it has a render
      log but no Snakemake incomplete marker and no benchmark record newer than the log (the job
      ended without success: an error, or killed for memory, by ``scancel`` or with its node);
    - *running* when Snakemake's incomplete marker for its image exists in
      ``{workdir}/.snakemake/incomplete/`` (see :func:`dc2flow.smk.incomplete_outputs`);
    - *missing* otherwise (not started, or its image deleted after its job succeeded).

    A driver killed mid-job leaves its markers, so its jobs show as running until Snakemake is
    run again in ``workdir`` (which clears them); a wrong ``workdir`` shows no job as running.

    A visit with no rows in the bundle plan (or no plan yet), named by a log or failure record
    newer than the plan (older ones are an earlier campaign's), whose catalog, partition or estimate
    job failed (failure record, or log without marker or newer benchmark) gets ``stage`` =
    ``"failed before rendering: <stage>"``, and one still at those stages ``"running before
    rendering: <stage>"``; one whose early jobs all ended well but which is in no plan yet,
    ``"not in the bundle plan yet"``.  Its sensors count as failed, running or missing: the ones
    named by its partition files, else as many as the largest planned visit (189 when none is), so
    the totals and the progress bar do not read 100 % while a visit has not rendered.

    ``job_hours`` sums the render jobs' benchmark wall times (one core each); ``node_hours`` sums,
    per bundle, the longest member's wall time (members run side by side on one node).
    """
    outdir = os.fspath(outdir)
    expected, bundles, source = expected_sensors(outdir)
    workdirs = [workdir] if isinstance(workdir, (str, os.PathLike)) else list(workdir)
    markers = set().union(*(incomplete_outputs(w) for w in workdirs))
    real_out = os.path.realpath(outdir)
    planned = {v for v, _ in bundles}
    all_visits = sorted(set(expected) | _known_visits(outdir))
    per_visit = max((len(expected[v]) for v in planned), default=0) or max(
        (len(d) for d in expected.values()), default=0) or N_SCIENCE_SENSORS
    visits = []
    job_s = 0.0
    bundle_s: dict[str, float] = {}
    for visit in all_visits:   # each an Exposure (visit, snap)
        vd, key = f"{visit.visit:08d}", visit.key   # the images' folder, the stage files' key
        vs = VisitStatus(visit.visit, visit.snap)
        if visit not in planned and (pre := _pre_render_state(outdir, visit, markers)):
            state, stage = pre
            vs.stage = f"{state} before rendering: {stage}"
            names = expected.get(visit, [])
            (vs.failed if state == "failed" else vs.running).extend(names)
            vs.n_unnamed, vs.unnamed_as = (0 if names else per_visit), state
            visits.append(vs)
            continue
        if visit not in expected:   # its early jobs ended well, but it is in no plan (yet)
            vs.stage, vs.n_unnamed = "not in the bundle plan yet", per_visit
            visits.append(vs)
            continue
        images = {m.group(4): p for p in glob.glob(os.path.join(outdir, vd, f"eimage_{vd}-{visit.snap}-*.fits"))
                  if (m := IMAGE_RE.match(os.path.basename(p)))}
        running = {m.group(4) for p in markers if os.path.dirname(p) == os.path.join(real_out, vd)
                   and (m := IMAGE_RE.match(os.path.basename(p))) and int(m.group(2)) == visit.snap}
        for det_name in expected.get(visit, []):
            bench = _first(os.path.join(outdir, "benchmarks", "render", key, f"*-{det_name}-det*.tsv"))
            if det_name in images:
                vs.done.append(det_name)
                secs = read_benchmark(bench)["runtime_s"] if bench else None
                if secs is not None:
                    job_s += secs
                    b = bundles.get((visit, det_name), f"{key}-{det_name}")
                    bundle_s[b] = max(bundle_s.get(b, 0.0), secs)
                continue
            log = _first(os.path.join(outdir, "logs", "render", key, f"*-{det_name}-det*.log"))
            if _first(os.path.join(outdir, "failures", "render", f"{key}_*_{det_name}_*.json")):
                vs.failed.append(det_name)
            elif det_name in running:
                vs.running.append(det_name)
            elif log and not _finished_after(bench, log):
                vs.failed.append(det_name)
            else:
                vs.missing.append(det_name)
        visits.append(vs)
    totals = {k: sum(len(getattr(v, k)) for v in visits) for k in ("done", "failed", "running", "missing")}
    for v in visits:
        totals[v.unnamed_as] += v.n_unnamed
    totals["expected"] = sum(v.expected for v in visits)
    return {"outdir": outdir, "workdir": ",".join(map(os.fspath, workdirs)), "expected_from": source, "generated_utc": utc_now(),
            "visits": [{"visit": v.visit, "snap": v.snap, "expected": v.expected,
                        **{k: len(getattr(v, k)) + (v.n_unnamed if v.unnamed_as == k else 0)
                           for k in ("done", "failed", "running", "missing")},
                        "failed_sensors": v.failed, "missing_sensors": v.missing, "stage": v.stage} for v in visits],
            "totals": totals, "job_hours": round(job_s / 3600.0, 6), "node_hours": round(sum(bundle_s.values()) / 3600.0, 6)}


def progress_bar(done: int, total: int, width: int = 40) -> str:
    """``[#########.........]  45/100  45.0%``"""
    frac = done / total if total else 1.0
    n = int(round(frac * width))
    return f"[{'#' * n}{'.' * (width - n)}] {done:>{len(str(total))}}/{total} {100 * frac:5.1f}%"


def format_status(status: dict) -> str:
    """The human-readable campaign status: one line per exposure, totals, hours and a progress bar."""
    lines = [f"{'visit':>8}  {'snap':>4}  {'expected':>8}  {'done':>5}  {'failed':>6}  {'running':>7}  {'missing':>7}  failed sensors or stage"]
    for v in status["visits"]:
        lines.append(f"{v['visit']:>8}  {v.get('snap', 0):>4}  {v['expected']:>8}  {v['done']:>5}  {v['failed']:>6}  {v['running']:>7}  "
                     f"{v['missing']:>7}  {v.get('stage') or ','.join(v['failed_sensors'])}".rstrip())
    t = status["totals"]
    lines.append(f"{'total':>8}  {'':>4}  {t['expected']:>8}  {t['done']:>5}  {t['failed']:>6}  {t['running']:>7}  {t['missing']:>7}")
    lines.append(f"render job-hours {status['job_hours']:.3f}, node-hours {status['node_hours']:.3f} "
                 f"(expected sensors from the {status['expected_from']})")
    lines.append(progress_bar(t["done"], t["expected"]))
    return "\n".join(lines)
