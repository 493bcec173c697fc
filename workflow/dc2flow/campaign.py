"""A campaign: the visits named by a configuration and the files the pipeline makes for them.

Snakemake's ``common.smk`` asks this module for the visit list (reading only catalog headers) and
for the output names, so the names are defined once, here.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from .packing import PlanRow, read_plan
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


RenderRequest = PlanRow
"""What one render job asks its scheduler for: its row of the bundle plan (:class:`dc2flow.packing.PlanRow`,
with ``bundle``, ``mem_mb``, ``runtime_min`` and ``bundle_mem_mb``)."""


@dataclass(frozen=True)
class PlanLookup:
    """A bundle plan as the workflow asks it, built once per plan file (see :func:`plan_lookup`).

    Parameters:
        requests:  (visit, det_name) -> the sensor's :class:`PlanRow`.
        members:   bundle -> [(visit, det_name), ...] in plan order.
    """

    requests: dict
    members: dict


def plan_lookup(plan_csv: str | os.PathLike) -> PlanLookup:
    """The plan's :class:`PlanLookup`, read (and checked) by :func:`dc2flow.packing.read_plan` once
    per file: cached on the path and modification time, since Snakemake asks for every job.

    Raises:
        BundlingError: a malformed plan (``file:line``).
    """
    st = os.stat(plan_csv)
    return _plan_lookup(os.fspath(plan_csv), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _plan_lookup(plan_csv: str, _mtime_ns: int, _size: int) -> PlanLookup:
    requests, members = {}, {}
    for row in read_plan(plan_csv):
        requests[(row.visit, row.det_name)] = row
        members.setdefault(row.bundle, []).append((row.visit, row.det_name))
    return PlanLookup(requests, members)


def render_requests(plan_csv: str | os.PathLike) -> dict[tuple[int, str], PlanRow]:
    """(visit, det_name) -> :class:`PlanRow` for every sensor of a bundle plan (cached, see :func:`plan_lookup`)."""
    return plan_lookup(plan_csv).requests


def bundle_members(plan_csv: str | os.PathLike) -> dict[str, list[tuple[int, str]]]:
    """bundle -> [(visit, det_name), ...] in plan order (cached, see :func:`plan_lookup`)."""
    return plan_lookup(plan_csv).members


def write_manifest(images: list[str], out: str) -> None:
    """A bundle's record of what it made: path, bytes and FITS DATASUM of every image (TSV)."""
    from astropy.io import fits

    from .io import atomic_output

    with atomic_output(out) as tmp, open(tmp, "w") as fh:
        fh.write("image\tbytes\tdatasum\n")
        for path in images:
            fh.write(f"{path}\t{os.path.getsize(path)}\t{fits.getval(path, 'DATASUM')}\n")
