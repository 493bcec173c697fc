"""A campaign: the exposures named by a configuration and the files the pipeline makes for them.

Snakemake's ``common.smk`` asks this module for the exposure list (reading only catalog headers, or
the visits' rows of an OpSim database) and for the output names, so the names are defined once, here.

Exposures: an exposure is one snap of one visit, :class:`Exposure` ``(visit, snap)``.  A run
renders the snaps of config ``snaps`` (e.g. ``[0, 1]``) of each of its OpSim visits; an instance
catalog is one snap, snap 0.  Every stage file is keyed by the exposure's :attr:`Exposure.key`
(:func:`exposure_key`, read back by :func:`parse_exposure`, the one place of that mapping): the
8-digit visit ``00449053`` for snap 0, so a one-snap run's files are named as they always were,
and ``00449053-1`` for snap 1 (``catalog/``, ``partitions/``, ``estimates/``, ``validation/``,
``registry/records/``, ``registry/visits/``, ``logs/``, ``benchmarks/``, ``failures/``).  Images
and truth tables stay where imSim puts them, in the visit's folder with the snap in the name
(``{visit:08d}/eimage_{visit:08d}-{snap}-...``).  The bundle plan and the registry carry the snap
as a column (rows keyed (visit, snap, det_name)); the bundle planner charges the per-visit memory
overhead per exposure, since each snap builds its own visit state (sky, WCS, PSF, atmosphere).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import NamedTuple

from .packing import PlanRow, read_plan
from .camera import get_sensor
from .catalog import read_header
from .config import resolve_catalogs
from .errors import ConfigError

EXPOSURE_KEY_REGEX = r"\d{8}(?:-[1-9]\d*)?"
"""An exposure key: 8 digits (snap 0), or 8 digits, ``-`` and the snap without leading zeros."""
_KEY_RE = re.compile(r"(\d{8})(?:-([1-9]\d*))?")


class Exposure(NamedTuple):
    """One snap of one visit: what one set of stage files describes (sorted by visit, then snap)."""

    visit: int
    snap: int = 0

    @property
    def key(self) -> str:
        """The stage files' name for it (:func:`exposure_key`)."""
        return exposure_key(self.visit, self.snap)


def exposure_key(visit: int, snap: int = 0) -> str:
    """``{visit:08d}`` for snap 0, ``{visit:08d}-{snap}`` for snap >= 1 (e.g. ``00449053-1``).

    Raises:
        ConfigError: the visit is not 0 .. 99999999 or the snap is negative.
    """
    visit, snap = int(visit), int(snap)
    if not 0 <= visit < 10**8 or snap < 0:
        raise ConfigError("exposure", (visit, snap), "is not a visit of at most 8 digits and a snap >= 0",
                          "visit 0..99999999, snap 0, 1, ...")
    return f"{visit:08d}" if snap == 0 else f"{visit:08d}-{snap}"


def parse_exposure(key: str) -> Exposure:
    """The :class:`Exposure` of a stage-file key (:func:`exposure_key`'s inverse).

    Raises:
        ConfigError: ``key`` is not ``{visit:08d}`` or ``{visit:08d}-{snap}`` with snap >= 1 and no
            leading zero (``00449053-0`` is not a key: snap 0 is ``00449053``).
    """
    m = _KEY_RE.fullmatch(str(key))
    if not m:
        raise ConfigError("exposure", key, "is not an exposure key",
                          "{visit:08d} for snap 0, {visit:08d}-{snap} for snap >= 1 (e.g. 00449053, 00449053-1)")
    return Exposure(int(m.group(1)), int(m.group(2) or 0))


@dataclass(frozen=True)
class VisitEntry:
    """One exposure of a campaign: its visit number, band and catalog file (an instance catalog,
    or the OpSim database when ``kind`` is ``"opsim"``), and the snap rendered."""

    visit: int
    band: str
    catalog: str
    snap: int = 0
    kind: str = "instcat"

    @property
    def exposure(self) -> Exposure:
        return Exposure(self.visit, self.snap)

    @property
    def key(self) -> str:
        return exposure_key(self.visit, self.snap)


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


def opsim_visits(opsim_db: str, visit_ids: list[int], snaps: list[int] | tuple[int, ...] = (0,)
                 ) -> dict[Exposure, VisitEntry]:
    """:class:`Exposure` -> :class:`VisitEntry` for every snap of ``snaps`` of each OpSim visit (each
    visit's row is read: band, numExposures).

    Raises:
        ConfigError: a visit is listed twice.
        CatalogError: the database is missing or malformed, a visit is not in it, or it has no such
            snap (a snap >= its numExposures).
    """
    from .opsim import read_visit

    out: dict[Exposure, VisitEntry] = {}
    seen: set[int] = set()
    for v in visit_ids:
        if int(v) in seen:
            raise ConfigError("visits", v, "is listed twice", "each observationId once")
        seen.add(int(v))
        for snap in snaps:
            visit = read_visit(opsim_db, int(v), int(snap))
            entry = VisitEntry(visit.visit, visit.band, str(opsim_db), snap=visit.snap, kind="opsim")
            out[entry.exposure] = entry
    return dict(sorted(out.items()))


def run_snaps(config: dict) -> tuple[int, ...]:
    """The snaps a run renders of each visit (config ``snaps``), ascending.

    Raises:
        ConfigError: no snap, a snap listed twice or not an integer >= 0, or a snap other than 0
            with instance catalogs (an instance catalog is one snap).
    """
    given = list(config.get("snaps") or [0])
    try:
        snaps = [int(s) for s in given]
    except (TypeError, ValueError):
        raise ConfigError("snaps", given, "a snap is not an integer", "snaps such as [0] or [0, 1]") from None
    if any(s < 0 for s in snaps) or len(set(snaps)) != len(snaps):
        raise ConfigError("snaps", given, "snaps are distinct integers >= 0", "snaps such as [0] or [0, 1]")
    if snaps != [0] and config.get("catalogs"):
        raise ConfigError("snaps", given, "instance catalogs are snap 0 (one catalog per snap)",
                          "[0] with catalogs, or OpSim visits only")
    return tuple(sorted(snaps))


def config_visits(config: dict) -> dict[Exposure, VisitEntry]:
    """:class:`Exposure` -> :class:`VisitEntry` of a run, sorted: its instance catalogs (``catalogs``,
    snap 0) and each snap of :func:`run_snaps` of its OpSim visits (``opsim_db`` with ``visits``).

    Raises:
        ConfigError: ``visits`` without ``opsim_db`` or the reverse, ``sky_catalog`` without
            ``opsim_db``, a bad ``snaps``, or a visit number given by a catalog and the database.
        CatalogError: a catalog header or the database is malformed, or a visit has no such snap.
    """
    snaps = run_snaps(config)
    db, ids = config.get("opsim_db"), [int(v) for v in config.get("visits") or []]
    if ids and not db:
        raise ConfigError("visits", ids, "OpSim visits need opsim_db, the OpSim database", "opsim_db: path/to/opsim.db")
    if db and not ids:
        raise ConfigError("opsim_db", db, "given without visits (the observationIds to render)", "visits: [449053, ...]")
    if config.get("sky_catalog") and not db:
        raise ConfigError("sky_catalog", config["sky_catalog"], "gives the objects of OpSim visits: set opsim_db "
                          "and visits too", "opsim_db and visits")
    out = {Exposure(v, 0): entry for v, entry in visits(config.get("catalogs") or []).items()}
    if db:
        for exposure, entry in opsim_visits(db, ids, snaps).items():
            if Exposure(exposure.visit, 0) in out and out[Exposure(exposure.visit, 0)].kind == "instcat":
                raise ConfigError("visits", exposure.visit, "is also the visit of the instance catalog "
                                  f"{out[Exposure(exposure.visit, 0)].catalog}", "each visit once")
            out[exposure] = entry
    return dict(sorted(out.items()))


def visit_regex(visits: dict[Exposure, VisitEntry], kind: str) -> str:
    """A wildcard constraint for ``{visit}``, an exposure key (:data:`EXPOSURE_KEY_REGEX`), matching
    the exposures of ``kind`` only, so that the catalog rule and the OpSim rule never both claim
    one: any key when every exposure is of that kind, none when none is, else the others excluded
    by a lookahead (a key followed by neither a digit nor ``-``: ``00449053`` excludes
    ``00449053/`` but not ``00449053-1/``)."""
    mine = [e.key for e in visits.values() if e.kind == kind]
    others = [e.key for e in visits.values() if e.kind != kind]
    if not others:
        return EXPOSURE_KEY_REGEX
    if not mine:
        return r"(?!)" + EXPOSURE_KEY_REGEX
    return r"(?!(?:" + "|".join(others) + r")(?![\d-]))" + EXPOSURE_KEY_REGEX


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
        requests:  (visit, snap, det_name) -> the sensor's :class:`PlanRow`.
        members:   bundle -> [(visit, snap, det_name), ...] in plan order.
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
        key = (row.visit, row.snap, row.det_name)
        requests[key] = row
        members.setdefault(row.bundle, []).append(key)
    return PlanLookup(requests, members)


def render_requests(plan_csv: str | os.PathLike) -> dict[tuple[int, int, str], PlanRow]:
    """(visit, snap, det_name) -> :class:`PlanRow` for every sensor of a bundle plan (cached, see :func:`plan_lookup`)."""
    return plan_lookup(plan_csv).requests


def bundle_members(plan_csv: str | os.PathLike) -> dict[str, list[tuple[int, int, str]]]:
    """bundle -> [(visit, snap, det_name), ...] in plan order (cached, see :func:`plan_lookup`)."""
    return plan_lookup(plan_csv).members


def write_manifest(images: list[str], out: str) -> None:
    """A bundle's record of what it made: path, bytes and FITS DATASUM of every image (TSV)."""
    from astropy.io import fits

    from .io import atomic_output

    with atomic_output(out) as tmp, open(tmp, "w") as fh:
        fh.write("image\tbytes\tdatasum\n")
        for path in images:
            fh.write(f"{path}\t{os.path.getsize(path)}\t{fits.getval(path, 'DATASUM')}\n")
