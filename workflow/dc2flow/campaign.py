"""A campaign: the visits named by a configuration and the files the pipeline makes for them.

Snakemake's ``common.smk`` asks this module for the visit list (reading only catalog headers, or
the visits' rows of an OpSim database) and for the output names, so the names are defined once, here.

Snaps: one run renders one snap of its visits (config ``snaps``, one value; instance catalogs are
snap 0).  The snap is in every image and truth-table name, as imSim's
(``eimage_{visit:08d}-{snap}-...``); the stage files under ``catalog/``, ``partitions/``, the
registry and validation records are keyed by the visit alone, so two snaps of a visit go in two
runs with two output folders.  Keying the workflow by (visit, snap) would touch the bundle plan,
the registry key and every per-visit rule: not done yet.
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
    """One visit of a campaign: its number, band and catalog file (an instance catalog, or the
    OpSim database when ``kind`` is ``"opsim"``), and the snap rendered."""

    visit: int
    band: str
    catalog: str
    snap: int = 0
    kind: str = "instcat"


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


def opsim_visits(opsim_db: str, visit_ids: list[int], snap: int = 0) -> dict[int, VisitEntry]:
    """visit -> :class:`VisitEntry` for OpSim visits (each visit's row is read: band, snaps).

    Raises:
        ConfigError: a visit is listed twice.
        CatalogError: the database is missing or malformed, a visit is not in it, or it has no such snap.
    """
    from .opsim import read_visit

    out: dict[int, VisitEntry] = {}
    for v in visit_ids:
        if int(v) in out:
            raise ConfigError("visits", v, "is listed twice", "each observationId once")
        visit = read_visit(opsim_db, int(v), snap)
        out[visit.visit] = VisitEntry(visit.visit, visit.band, str(opsim_db), snap=snap, kind="opsim")
    return dict(sorted(out.items()))


def run_snap(config: dict) -> int:
    """The one snap a run renders (config ``snaps``).

    Raises:
        ConfigError: more than one snap, or a snap other than 0 with instance catalogs.
    """
    snaps = list(config.get("snaps") or [0])
    if len(snaps) != 1:
        raise ConfigError("snaps", snaps, "a run renders one snap of its visits (the stage files, bundle plan and "
                          "registry are keyed by visit): run each snap with its own outdir", "a list of one snap")
    snap = int(snaps[0])
    if snap != 0 and config.get("catalogs"):
        raise ConfigError("snaps", snaps, "instance catalogs are snap 0 (one catalog per snap)",
                          "[0] with catalogs, or OpSim visits only")
    return snap


def config_visits(config: dict) -> dict[int, VisitEntry]:
    """visit -> :class:`VisitEntry` of a run: its instance catalogs (``catalogs``) and its OpSim visits
    (``opsim_db`` with ``visits``), snap :func:`run_snap`.

    Raises:
        ConfigError: ``visits`` without ``opsim_db`` or the reverse, ``sky_catalog`` without
            ``opsim_db``, a bad ``snaps``, or a visit number given by a catalog and the database.
        CatalogError: a catalog header or the database is malformed.
    """
    snap = run_snap(config)
    db, ids = config.get("opsim_db"), [int(v) for v in config.get("visits") or []]
    if ids and not db:
        raise ConfigError("visits", ids, "OpSim visits need opsim_db, the OpSim database", "opsim_db: path/to/opsim.db")
    if db and not ids:
        raise ConfigError("opsim_db", db, "given without visits (the observationIds to render)", "visits: [449053, ...]")
    if config.get("sky_catalog") and not db:
        raise ConfigError("sky_catalog", config["sky_catalog"], "gives the objects of OpSim visits: set opsim_db "
                          "and visits too", "opsim_db and visits")
    out = visits(config.get("catalogs") or [])
    if db:
        for v, entry in opsim_visits(db, ids, snap).items():
            if v in out:
                raise ConfigError("visits", v, f"is also the visit of the instance catalog {out[v].catalog}",
                                  "each visit once")
            out[v] = entry
    return dict(sorted(out.items()))


def visit_regex(visits: dict[int, VisitEntry], kind: str) -> str:
    """A wildcard constraint for ``{visit}`` (8 digits) matching the visits of ``kind`` only, so that
    the catalog rule and the OpSim rule never both claim a visit: any 8 digits when every visit is
    of that kind, none when none is, else the others excluded by a lookahead."""
    mine = [v for v, e in visits.items() if e.kind == kind]
    others = [v for v, e in visits.items() if e.kind != kind]
    if not others:
        return r"\d{8}"
    if not mine:
        return r"(?!)\d{8}"
    return r"(?!(?:" + "|".join(visit_dir(v) for v in others) + r")(?!\d))\d{8}"


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
