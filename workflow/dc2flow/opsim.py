"""Read one visit (one snap of it) from an OpSim database, the way imSim's ``OpsimDataLoader`` does.

An OpSim output is an SQLite file whose table ``observations`` has one row per visit, keyed by
``observationId``.  :func:`read_visit` turns the row of one visit and one snap into the same
frozen :class:`dc2flow.catalog.Visit` an instance-catalog header gives, so every later stage
(partition, render, validation) takes either.  The mapping follows imSim's
``imsim/opsim_data.py`` (``_read_opsim_db``):

=========================  ==================================================================
``Visit`` field            from the row
=========================  ==================================================================
``visit``, ``seed``        ``observationId`` (imSim seeds with the visit, for every snap)
``ra_deg``, ``dec_deg``    ``fieldRA``, ``fieldDec``
``band``, ``filter``       ``filter`` (a letter), and its index in ``ugrizy``
``rotskypos_deg``          ``rotSkyPos``; ``rottelpos_deg``: ``rotTelPos``
``seeing_arcsec``          ``seeingFwhm500`` (imSim's ``rawSeeing``)
``seeing_fwhm_geom_arcsec`` ``seeingFwhmGeom``
``exptime_s``              ``visitExposureTime / numExposures`` (one snap)
``nsnap``                  ``numExposures``
``mjd``                    the middle of the snap, TAI: ``observationStartMJD + (snap * (exptime
                           + readout) + exptime / 2) / 86400`` with ``readout = (visitTime -
                           visitExposureTime) / numExposures``
``seqnum``                 the day's sequence number: the ``numExposures`` of every visit with
                           ``observationStartMJD >= int(start - 0.5) + 0.5`` (Rubin's dayobs) and
                           a smaller ``observationId``, summed, plus ``snap``
``altitude_deg`` ...       ``altitude``, ``azimuth``, ``moonRA``, ``moonDec``, ``moonAlt``,
                           ``moonPhase``, ``moonDistance``, ``sunAlt``, ``skyBrightness``,
                           ``fiveSigmaDepth``, ``observationStartMJD``, ``airmass``, ``paraAngle``
=========================  ==================================================================

A missing file, a file that is not SQLite, a database without the table or a needed column, an
``observationId`` not in it and a snap outside ``0 .. numExposures-1`` raise
:class:`~dc2flow.errors.CatalogError` naming the file and the visit.  The database is opened
read-only.
"""

from __future__ import annotations

import math
import os
import sqlite3
from typing import Any

from .catalog import BANDS, Visit, _check_range
from .errors import CatalogError

__all__ = ["TABLE", "REQUIRED_COLUMNS", "read_visit", "visit_ids", "is_sqlite"]

#: The OpSim table imSim reads.
TABLE = "observations"

#: The columns :func:`read_visit` needs.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "observationId", "fieldRA", "fieldDec", "observationStartMJD", "visitExposureTime", "visitTime",
    "numExposures", "filter", "rotSkyPos", "rotTelPos", "seeingFwhm500", "altitude", "azimuth",
    "moonRA", "moonDec", "moonAlt", "moonPhase", "moonDistance", "sunAlt",
)

#: Columns taken where present (None otherwise).
OPTIONAL_COLUMNS: tuple[str, ...] = ("seeingFwhmGeom", "skyBrightness", "fiveSigmaDepth", "airmass", "paraAngle")

_SQLITE_MAGIC = b"SQLite format 3\x00"


def is_sqlite(path: str | os.PathLike) -> bool:
    """True when the file starts with SQLite's header (as imSim's ``_is_sqlite3_file``)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


def _connect(path: str) -> sqlite3.Connection:
    if not os.path.isfile(path):
        raise CatalogError(path, 0, "OpSim database not found", fix="check the path given as opsim_db")
    if not is_sqlite(path):
        raise CatalogError(path, 0, "not an SQLite file (an OpSim database is one)",
                           fix="give the OpSim output database (.db) as opsim_db")
    uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23") + "?mode=ro"
    try:
        return sqlite3.connect(uri, uri=True)
    except sqlite3.Error as e:
        raise CatalogError(path, 0, "cannot open the OpSim database", value=str(e), fix="check the file") from e


def _columns(con: sqlite3.Connection, path: str) -> list[str]:
    try:
        columns = [row[1] for row in con.execute(f"pragma table_info('{TABLE}')")]
    except sqlite3.Error as e:
        raise CatalogError(path, 0, "cannot read the OpSim database", value=str(e), fix="check the file") from e
    if not columns:
        raise CatalogError(path, 0, f"the database has no table '{TABLE}'",
                           fix="give an OpSim output database (table 'observations')")
    return columns


def visit_ids(path: str | os.PathLike) -> list[int]:
    """Every ``observationId`` of the database, sorted.

    Raises:
        CatalogError: the file is missing or is not an OpSim database.
    """
    path = os.fspath(path)
    con = _connect(path)
    try:
        columns = _columns(con, path)
        if "observationId" not in columns:
            raise CatalogError(path, 0, f"table '{TABLE}' has no column 'observationId'",
                               fix="give an OpSim output database")
        return sorted(int(r[0]) for r in con.execute(f"select observationId from {TABLE}"))
    finally:
        con.close()


def read_visit(path: str | os.PathLike, visit: int, snap: int = 0) -> Visit:
    """One snap of one OpSim visit as a :class:`~dc2flow.catalog.Visit` (see the module's table).

    Parameters:
        path:   the OpSim database (SQLite, table ``observations``).
        visit:  the ``observationId``.
        snap:   the snap, 0-based [default: 0].

    Returns:
        the `Visit` (``source_kind`` ``"opsim"``, ``path`` the database, ``extra`` the row's
        ``note``, ``night`` and ``fieldId`` where present).

    Raises:
        CatalogError: the file is missing or not an OpSim database, a needed column is missing, no
            row has that ``observationId``, ``snap`` is not in ``0 .. numExposures-1``, or a value
            is out of range (e.g. a NULL, an altitude at or below the horizon).
    """
    path = os.fspath(path)
    visit, snap = int(visit), int(snap)
    where = f"visit {visit}"
    con = _connect(path)
    try:
        columns = _columns(con, path)
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise CatalogError(path, 0, f"table '{TABLE}' has no column '{missing[0]}' ({where})",
                               value=", ".join(missing) if len(missing) > 1 else None,
                               fix="give an OpSim output database with imSim's columns")
        try:
            cur = con.execute(f"select * from {TABLE} where observationId = ?", (visit,))
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
            if not rows:
                raise CatalogError(path, 0, f"no row with observationId {visit}",
                                   fix="list a visit of this database in 'visits'")
            if len(rows) > 1:
                raise CatalogError(path, 0, f"{len(rows)} rows with observationId {visit}",
                                   fix="an OpSim database has one row per visit")
            row = dict(zip(names, rows[0]))
            _check_row(row, path, where)
            t0 = int(row["observationStartMJD"] - 0.5) + 0.5  # Rubin's dayobs (imSim's formula)
            before = con.execute(f"select numExposures from {TABLE} where ? <= observationStartMJD "
                                 "and observationId < ?", (t0, visit)).fetchall()
        except sqlite3.Error as e:
            raise CatalogError(path, 0, f"cannot read {where}", value=str(e), fix="check the file") from e
    finally:
        con.close()
    nsnap = int(row["numExposures"])
    if nsnap < 1:
        raise CatalogError(path, 0, f"numExposures of {where} is not positive", value=nsnap,
                           fix="fix the database")
    if not 0 <= snap < nsnap:
        raise CatalogError(path, 0, f"snap {snap} of {where} does not exist", value=f"numExposures {nsnap}",
                           fix=f"ask for a snap in 0..{nsnap - 1} ('snaps' in the config)")
    band = row["filter"]
    if not isinstance(band, str) or band not in BANDS or len(band) != 1:
        raise CatalogError(path, 0, f"filter of {where} is not one of {', '.join(BANDS)}", value=repr(band),
                           fix="fix the database")
    exptime = float(row["visitExposureTime"]) / nsnap
    readout = (float(row["visitTime"]) - float(row["visitExposureTime"])) / nsnap
    start = float(row["observationStartMJD"])
    mjd = start + (snap * (exptime + readout) + exptime / 2.0) / 86400.0
    seqnum = sum(int(n) for (n,) in before if n is not None) + snap
    altitude = float(row["altitude"])
    if not 0 < altitude <= 90:
        raise CatalogError(path, 0, f"altitude of {where} is not in (0, 90] degrees", value=altitude,
                           fix="a visit is observed above the horizon")
    for key, value in (("obshistid", visit), ("rightascension", float(row["fieldRA"])),
                       ("declination", float(row["fieldDec"])), ("seeing", float(row["seeingFwhm500"])),
                       ("vistime", exptime)):
        _check_range(key, value, f"{path} ({where})", 0)
    extra = tuple(sorted((k, str(row[k])) for k in ("note", "night", "fieldId") if row.get(k) is not None))
    return Visit(
        visit=visit, ra_deg=float(row["fieldRA"]), dec_deg=float(row["fieldDec"]), mjd=mjd,
        filter=BANDS.index(band), band=band, rotskypos_deg=float(row["rotSkyPos"]),
        rottelpos_deg=float(row["rotTelPos"]), seeing_arcsec=float(row["seeingFwhm500"]),
        exptime_s=exptime, seed=visit, altitude_deg=altitude, azimuth_deg=float(row["azimuth"]),
        nsnap=nsnap, seqnum=seqnum, moon_ra_deg=float(row["moonRA"]), moon_dec_deg=float(row["moonDec"]),
        moon_alt_deg=float(row["moonAlt"]), moon_phase=float(row["moonPhase"]),
        dist2moon_deg=float(row["moonDistance"]), sun_alt_deg=float(row["sunAlt"]), path=path, extra=extra,
        snap=snap, seeing_fwhm_geom_arcsec=_optional(row, "seeingFwhmGeom"),
        sky_brightness_mag=_optional(row, "skyBrightness"), five_sigma_depth=_optional(row, "fiveSigmaDepth"),
        observation_start_mjd=start, airmass_opsim=_optional(row, "airmass"),
        para_angle_deg=_optional(row, "paraAngle"), source_kind="opsim",
    )


def _check_row(row: dict[str, Any], path: str, where: str) -> None:
    """Every needed value is there and a finite number (``filter``: any, checked later)."""
    for key in REQUIRED_COLUMNS:
        if key == "filter":
            continue
        value = row[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CatalogError(path, 0, f"column '{key}' of {where} is not a finite number", value=repr(value),
                               fix="fix the database")


def _optional(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
