"""A campaign: the visits named by a configuration and the files the pipeline makes for them.

Snakemake's ``common.smk`` asks this module for the visit list (reading only catalog headers) and
for the output names, so the names are defined once, here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

from .bundle import read_plan
from .camera import get_sensor
from .catalog import read_header
from .config import resolve_catalogs
from .errors import ConfigError


@dataclass(frozen=True)
class VisitEntry:
    """One visit of a campaign: its number, band and catalog file."""

    visit: int
    band: str
    catalog: str


def visits(catalog_patterns: list[str]) -> dict[int, VisitEntry]:
    """visit -> :class:`VisitEntry` for every catalog (headers only).

    Raises:
        ConfigError: when a pattern matches nothing or two catalogs share a visit number.
        CatalogError: when a header is malformed.
    """
    out: dict[int, VisitEntry] = {}
    for path in resolve_catalogs(catalog_patterns):
        header = read_header(path)
        if header.visit in out:
            raise ConfigError("catalogs", path, f"visit {header.visit} is also in {out[header.visit].catalog}",
                              "one catalog per visit")
        out[header.visit] = VisitEntry(header.visit, header.band, path)
    return dict(sorted(out.items()))


def visit_dir(visit: int) -> str:
    """The 8-digit visit directory name."""
    return f"{int(visit):08d}"


def image_name(visit: int, band: str, det_name: str, snap: int = 0) -> str:
    """imSim's eimage file name: ``eimage_{visit:08d}-{snap}-{band}-{det_name}-det{det_num:03d}.fits``."""
    return f"eimage_{int(visit):08d}-{snap}-{band}-{det_name}-det{get_sensor(det_name).det_num:03d}.fits"


def truth_name(visit: int, band: str, det_name: str, snap: int = 0) -> str:
    """The truth table beside the image (imSim's centroid file, tab-separated)."""
    return image_name(visit, band, det_name, snap).replace("eimage_", "centroid_").replace(".fits", ".txt.gz")


@dataclass(frozen=True)
class RenderRequest:
    """What one render job asks its scheduler for, from the bundle plan and the estimates.

    Parameters:
        bundle:     the bundle (one Slurm group job) the sensor belongs to.
        mem_mb:     its memory request; the first sensor of each visit in a bundle also carries
                    the per-visit overhead, so the group's request is the bundle's planned memory.
        runtime_min: its wall-time request in minutes.
        bundle_mem_mb: the whole bundle's planned memory (the sum of its members' mem_mb).
    """

    bundle: str
    mem_mb: int
    runtime_min: int
    bundle_mem_mb: int = 0


def render_requests(plan_csv: str, estimates_dir: str, visit_overhead_gb: float) -> dict[tuple[int, str], RenderRequest]:
    """(visit, det_name) -> :class:`RenderRequest` for every sensor of a bundle plan.

    Cached on the plan's path and modification time: Snakemake asks once per job.
    """
    import os

    return _render_requests(plan_csv, os.stat(plan_csv).st_mtime_ns, estimates_dir, visit_overhead_gb)


@functools.lru_cache(maxsize=4)
def _render_requests(plan_csv: str, _mtime_ns: int, estimates_dir: str,
                     visit_overhead_gb: float) -> dict[tuple[int, str], RenderRequest]:
    import math
    import os

    from .estimate import read_estimates

    estimates: dict[int, dict[str, dict]] = {}
    out = {}
    first_of_visit: set[tuple[str, int]] = set()
    for bundle, visit, sensor in read_plan(plan_csv):
        if visit not in estimates:
            path = os.path.join(estimates_dir, f"{visit_dir(visit)}.tsv")
            estimates[visit] = {r["sensor"]: r for r in read_estimates(path)}
        est = estimates[visit][sensor]
        mem_gb = est["mem_gb"]
        if (bundle, visit) not in first_of_visit:
            first_of_visit.add((bundle, visit))
            mem_gb += visit_overhead_gb
        # round memory down: the plan fits the bundle in the node to the byte, and the requests
        # of up to node_cores members must not add up to more
        out[(visit, sensor)] = RenderRequest(bundle, int(mem_gb * 1024), max(1, int(math.ceil(est["runtime_s"] / 60.0))))
    totals: dict[str, int] = {}
    for req in out.values():
        totals[req.bundle] = totals.get(req.bundle, 0) + req.mem_mb
    return {key: dataclasses.replace(req, bundle_mem_mb=totals[req.bundle]) for key, req in out.items()}


def bundle_members(plan_csv: str) -> dict[str, list[tuple[int, str]]]:
    """bundle -> [(visit, det_name), ...] in plan order (cached on the plan's mtime)."""
    import os

    return _bundle_members(plan_csv, os.stat(plan_csv).st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _bundle_members(plan_csv: str, _mtime_ns: int) -> dict[str, list[tuple[int, str]]]:
    out: dict[str, list[tuple[int, str]]] = {}
    for bundle, visit, det_name in read_plan(plan_csv):
        out.setdefault(bundle, []).append((visit, det_name))
    return out


def write_manifest(images: list[str], out: str) -> None:
    """A bundle's record of what it made: path, bytes and FITS DATASUM of every image (TSV)."""
    import os

    from astropy.io import fits

    from .io import atomic_output

    with atomic_output(out) as tmp, open(tmp, "w") as fh:
        fh.write("image\tbytes\tdatasum\n")
        for path in images:
            fh.write(f"{path}\t{os.path.getsize(path)}\t{fits.getval(path, 'DATASUM')}\n")
