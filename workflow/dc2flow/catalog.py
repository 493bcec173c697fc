"""Read phosim/imSim instance catalogs: one `Visit` header record and a table of objects.

An instance catalog describes one visit.  It starts with a header of ``key value`` lines
(``rightascension``, ``mjd``, ``filter``, ...) and continues with ``object`` lines, possibly spread
over further files named by ``includeobj`` lines (plain text, or gzip when the name ends in
``.gz``; named relative to the including file, and only files in the top-level catalog's folder
and its subfolders may be included).  This module parses a catalog once, streaming: the header becomes a frozen `Visit`, and
the objects become Arrow record batches with the named columns of `OBJECT_SCHEMA`, written to a
Parquet file by `read_catalog`.  Nothing here knows about sensors or WCSs: cutting objects to a
sensor's footprint is :mod:`dc2flow.partition`'s job.

The object line format (what imSim reads)::

    object ID RA DEC MAGNORM SED REDSHIFT GAMMA1 GAMMA2 KAPPA DRA DDEC TYPE [params...] DUST DUST

with TYPE one of ``point`` (no params), ``sersic2d a b pa n`` or ``knots a b pa npoints``, and
each DUST either ``none`` or ``CCM A_V R_V`` (first the internal, then the galactic dust).

Some valid lines are skipped rather than rendered, as imSim does, and counted by reason in a
`SkipCounts`: magnorm >= 50, a token that is exactly ``inf`` or ``nan``, ``a < b`` for
``sersic2d`` and ``knots``, ``knots`` with ``npoints <= 0``, and object types we do not render
(FITS-image objects and unknown TYPE words).  Malformed lines raise `CatalogError` naming the file
and line.

Typical use::

    visit = read_header("instcat.txt")                  # cheap: stops at the first object
    visit, skips = read_catalog("instcat.txt", objects_out="objects.parquet")
    objects = read_objects("objects.parquet")           # a pandas.DataFrame
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import logging
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import IO, Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CatalogError, ConfigError, Dc2flowWarning
from .io import atomic_output, write_json

__all__ = [
    "BANDS", "REQUIRED_KEYS", "OPTIONAL_DEFAULTS", "OBJECT_SCHEMA", "DEFAULT_CHUNK_ROWS", "VALUE_RANGES",
    "Visit", "SkipCounts", "ObjectReader",
    "read_header", "iter_objects", "read_catalog", "read_objects",
]

logger = logging.getLogger(__name__)

#: The band of each catalog ``filter`` value: ``BANDS[filter]``.
BANDS = "ugrizy"

#: Header keys every catalog must have.
REQUIRED_KEYS: tuple[str, ...] = (
    "rightascension", "declination", "mjd", "filter",
    "seeing", "vistime", "obshistid", "seed", "altitude",
)

#: Of these two, at least one: the other is derived (``rotTelPos = rotSkyPos + q``, the parallactic
#: angle at the visit's time, :func:`dc2flow.wcs.rotation_angles`) with a warning; with both, the
#: WCS uses ``rottelpos``, as imSim does.
ROTATION_KEYS: tuple[str, ...] = ("rotskypos", "rottelpos")

#: Header keys imSim uses but a catalog may lack; each absent one is defaulted with a warning.
OPTIONAL_DEFAULTS: dict[str, float | int] = {
    "azimuth": 0.0,
    "dist2moon": 180.0,
    "moonalt": -90.0,
    "moondec": 0.0,
    "moonphase": 0.0,
    "moonra": 0.0,
    "sunalt": -90.0,
    "nsnap": 1,
    "seqnum": 0,
}

#: Rows per record batch (and Parquet row group) unless the caller says otherwise.
DEFAULT_CHUNK_ROWS = 100_000

#: The values the parser accepts, ``name -> (low, high)`` (both inclusive unless said), checked at
#: parse time with file:line.  Every real imSim/DC2 catalog in ../shared/data/imsim is well inside
#: them; each bound keeps a later stage from failing with a traceback or unbounded memory:
#:
#: - ``obshistid``: the output names use ``{visit:08d}`` and the Snakemake wildcard ``\d{8}``.
#: - ``rightascension``/``ra`` 0-360 and ``declination``/``dec`` -90-90 degrees.
#: - ``seeing`` (0, 5] arcsec (the PSF and validation FFTs grow with it), ``vistime`` (0, 3600] s.
#: - ``magnorm`` >= -10: with vistime <= 3600 s a pixel stays far below numpy's Poisson limit
#:   (~9e18); magnorm >= 50 is imSim's "no flux" marker and is skipped, not refused.
#: - ``redshift`` 0-20 (``1 + z`` divides the SED's flux).
#: - lensing: ``kappa < 1``, reduced shear ``|gamma| / (1 - kappa) < 1`` (GalSim's lens()) and
#:   magnification ``1 / ((1 - kappa)^2 - |gamma|^2)`` <= 4 (DC2's are ~1.2 at most).
#: - shapes: minor axis > 0 and major axis <= 10 arcsec; Sersic ``n`` in GalSim's 0.3-6.2 (refused,
#:   never clamped; imSim passes n to galsim.Sersic, which refuses it too); knots ``npoints``
#:   <= 1000 (DC2's knots have tens).  Measured (peak RSS of one bright object drawn by FFT into a
#:   2049-px stamp): Sersic n 4 / hlr 10" 0.26 GB, n 6.2 / hlr 10" 0.62 GB, knots 1000 / 10" 0.26 GB.
VALUE_RANGES: dict[str, tuple[float, float]] = {
    "obshistid": (0, 99_999_999),
    "rightascension": (0.0, 360.0),
    "declination": (-90.0, 90.0),
    "seeing": (0.0, 5.0),        # low bound exclusive
    "vistime": (0.0, 3600.0),    # low bound exclusive
    "ra": (0.0, 360.0),
    "dec": (-90.0, 90.0),
    "magnorm": (-10.0, math.inf),
    "redshift": (0.0, 20.0),
    "kappa": (-math.inf, 1.0),   # high bound exclusive
    "reduced shear": (0.0, 1.0),  # high bound exclusive
    "magnification": (0.0, 4.0),  # low bound exclusive; sizes grow by its square root
    "minor axis": (0.0, 10.0),   # arcsec, low bound exclusive
    "major axis": (0.0, 10.0),   # arcsec, low bound exclusive
    "sersic n": (0.3, 6.2),
    "knots npoints": (1, 1000),
}
_EXCLUSIVE_LOW = frozenset({"seeing", "vistime", "minor axis", "major axis", "magnification"})
_EXCLUSIVE_HIGH = frozenset({"kappa", "reduced shear"})


def _in_range(name: str, value: float) -> bool:
    low, high = VALUE_RANGES[name]
    above = value > low if name in _EXCLUSIVE_LOW else value >= low
    below = value < high if name in _EXCLUSIVE_HIGH else value <= high
    return above and below


def _range_text(name: str) -> str:
    low, high = VALUE_RANGES[name]
    left = "(" if name in _EXCLUSIVE_LOW else "["
    right = ")" if name in _EXCLUSIVE_HIGH else "]"
    return f"{left}{low:g}, {high:g}{right}"


def _check_range(name: str, value: float, path: str, lineno: int) -> None:
    if not _in_range(name, value):
        raise CatalogError(path, lineno, f"{name} is out of range", value=repr(value),
                           fix=f"the parser accepts {name} in {_range_text(name)} (see catalog.VALUE_RANGES)")


@dataclass(frozen=True)
class Visit:
    """The header of one instance catalog, i.e. one visit.

    Build it with `read_header` (or `read_catalog`); the field names carry their units, and
    ``filter`` (0-5, as in the catalog) is kept apart from ``band`` (``'u'`` to ``'y'``).

    Parameters:
        visit:          the visit number (``obshistid``).
        ra_deg:         boresight right ascension (``rightascension``), degrees.
        dec_deg:        boresight declination (``declination``), degrees.
        mjd:            MJD (TAI) of the middle of the exposure (``mjd``; imSim's reading), the WCS's time.
        filter:         the catalog's filter number, 0-5.
        band:           ``BANDS[filter]``, one of ``u g r i z y``.
        rotskypos_deg:  sky rotation angle (``rotskypos``), degrees.
        rottelpos_deg:  telescope rotator angle (``rottelpos``), degrees.
        seeing_arcsec:  the atmospheric seeing FWHM at 500 nm at zenith (``seeing``), arcsec.
        exptime_s:      visit exposure time (``vistime``), seconds.
        seed:           the catalog's random seed (``seed``).
        altitude_deg:   boresight altitude (``altitude``), degrees.
        azimuth_deg:    boresight azimuth (``azimuth``), degrees.
        nsnap:          number of snaps in the visit (``nsnap``).
        seqnum:         sequence number of the exposure (``seqnum``).
        moon_ra_deg:    Moon right ascension (``moonra``), degrees.
        moon_dec_deg:   Moon declination (``moondec``), degrees.
        moon_alt_deg:   Moon altitude (``moonalt``), degrees.
        moon_phase:     Moon phase (``moonphase``), percent illuminated as phosim gives it.
        dist2moon_deg:  distance from the boresight to the Moon (``dist2moon``), degrees.
        sun_alt_deg:    Sun altitude (``sunalt``), degrees.
        path:           the catalog file, as given to the reader.
        extra:          the header keys this class does not know, as sorted ``(key, text)``
                        pairs [default: ()].
        rotation_given: which of ``rotskypos``/``rottelpos`` the catalog gave (``both``, or the one
                        the other was derived from) [default: both].
        snap:           the snap of the visit this record describes, 0-based (an OpSim visit of
                        ``numExposures`` > 1 has that many) [default: 0].
        seeing_fwhm_geom_arcsec:  OpSim's ``seeingFwhmGeom``, arcsec; the PSF is sized to it
                        where given [default: None: computed from the seeing].
        sky_brightness_mag:  OpSim's ``skyBrightness``, AB mag/arcsec^2 [default: None].
        five_sigma_depth:    OpSim's ``fiveSigmaDepth``, AB mag [default: None].
        observation_start_mjd:  OpSim's ``observationStartMJD``, the start of the visit's first
                        snap (TAI) [default: None].
        airmass_opsim:  OpSim's ``airmass`` [default: None; `airmass` is 1/sin(altitude) either way].
        para_angle_deg: OpSim's ``paraAngle``, degrees [default: None].
        source_kind:    where the record came from: ``"instcat"`` (an instance catalog header) or
                        ``"opsim"`` (a row of an OpSim database, see :mod:`dc2flow.opsim`)
                        [default: "instcat"].
    """

    visit: int
    ra_deg: float
    dec_deg: float
    mjd: float
    filter: int
    band: str
    rotskypos_deg: float
    rottelpos_deg: float
    seeing_arcsec: float
    exptime_s: float
    seed: int
    altitude_deg: float
    azimuth_deg: float
    nsnap: int
    seqnum: int
    moon_ra_deg: float
    moon_dec_deg: float
    moon_alt_deg: float
    moon_phase: float
    dist2moon_deg: float
    sun_alt_deg: float
    path: str
    extra: tuple[tuple[str, str], ...] = ()
    rotation_given: str = "both"
    snap: int = 0
    seeing_fwhm_geom_arcsec: float | None = None
    sky_brightness_mag: float | None = None
    five_sigma_depth: float | None = None
    observation_start_mjd: float | None = None
    airmass_opsim: float | None = None
    para_angle_deg: float | None = None
    source_kind: str = "instcat"

    @property
    def airmass(self) -> float:
        """The plane-parallel airmass, ``1 / sin(altitude)``.

        Good to about 1% above 30 degrees altitude and increasingly too large below it; ``inf``
        when the altitude is zero or negative (no airmass is defined there).
        """
        sin_alt = math.sin(math.radians(self.altitude_deg))
        return 1.0 / sin_alt if sin_alt > 0.0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict; ``extra`` becomes a ``{key: text}`` dict."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Visit:
        """Build a `Visit` from `to_dict`'s output (``extra`` as a dict or as pairs)."""
        d = dict(d)
        extra = d.get("extra", ())
        items = extra.items() if isinstance(extra, dict) else extra
        d["extra"] = tuple(sorted((str(k), str(v)) for k, v in items))
        return cls(**d)

    def write_json(self, path: str | os.PathLike) -> None:
        """Write the visit as JSON (see `to_dict`), atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def read_json(cls, path: str | os.PathLike) -> Visit:
        """Read a visit written by `write_json`.

        Raises:
            CatalogError: the file is missing or is not a visit record.
        """
        try:
            with open(path) as fh:
                return cls.from_dict(json.load(fh))
        except (OSError, ValueError, TypeError) as e:
            raise CatalogError(str(path), 0, "cannot read a visit record", value=str(e),
                               fix="rerun 'dc2flow parse' on the catalog to rewrite it") from e


# Reason attribute of SkipCounts -> how the summary names it.
_SKIP_LABELS = {
    "magnorm_ge_50": "magnorm>=50",
    "inf_or_nan": "inf/nan",
    "a_lt_b": "a<b",
    "knots_npoints_le_0": "knots npoints<=0",
    "unsupported_type": "unsupported type",
}
_MAX_NAMES_SHOWN = 5


@dataclass(frozen=True)
class SkipCounts:
    """How many object lines one catalog had, and how many were skipped for each reason.

    Parameters:
        n_read:              ``object`` lines read (commented-out lines are not counted).
        n_kept:              objects kept in the table.
        magnorm_ge_50:       skipped for magnorm >= 50 (imSim's "no flux" marker).
        inf_or_nan:          skipped for a token ``inf``/``nan`` (or a number that is not finite).
        a_lt_b:              ``sersic2d``/``knots`` skipped for a major axis smaller than the minor.
        knots_npoints_le_0:  ``knots`` skipped for ``npoints <= 0``.
        unsupported_type:    skipped for a type we do not render (FITS images, unknown words).
        unsupported_names:   ``(type name, count)`` pairs behind ``unsupported_type``, sorted by
                             name; every FITS-image object counts as ``"FITS image"`` [default: ()].
        sources:             every file read (the catalog, then its includes in the order met), for
                             provenance; not compared by ``==`` [default: ()].
    """

    n_read: int = 0
    n_kept: int = 0
    magnorm_ge_50: int = 0
    inf_or_nan: int = 0
    a_lt_b: int = 0
    knots_npoints_le_0: int = 0
    unsupported_type: int = 0
    unsupported_names: tuple[tuple[str, int], ...] = ()
    sources: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    @property
    def n_skipped(self) -> int:
        """Objects skipped for any reason."""
        return sum(getattr(self, reason) for reason in _SKIP_LABELS)

    def summary(self) -> str:
        """One line for the log, e.g. ``kept 1995 of 1998 objects; skipped 3: 3 magnorm>=50``."""
        text = f"kept {self.n_kept} of {self.n_read} objects; skipped {self.n_skipped}"
        parts = [f"{getattr(self, r)} {label}" for r, label in _SKIP_LABELS.items() if getattr(self, r)]
        if self.unsupported_names:
            names = [f"{name} x{n}" for name, n in self.unsupported_names[:_MAX_NAMES_SHOWN]]
            if len(self.unsupported_names) > _MAX_NAMES_SHOWN:
                names.append("...")
            parts[-1] += f" ({', '.join(names)})"
        return text + (": " + ", ".join(parts) if parts else "")

    def to_dict(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict (``unsupported_names`` as a dict)."""
        d = dataclasses.asdict(self)
        d["unsupported_names"] = dict(self.unsupported_names)
        d["sources"] = list(self.sources)
        return d


#: The columns of the object table, in order.  Angles in degrees, sizes in arcsec; ``major``,
#: ``minor`` and ``pa`` are 0 for points, ``sersic_n`` is 0 unless sersic2d, ``npoints`` is 0
#: unless knots; dust ``none`` is stored as A_V 0 and R_V 3.1; ``line`` and ``source`` say where
#: each object came from (1-based line in that file, and the file's path).
OBJECT_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("ra_deg", pa.float64()),
    ("dec_deg", pa.float64()),
    ("magnorm", pa.float64()),
    ("sed", pa.string()),
    ("redshift", pa.float64()),
    ("gamma1", pa.float64()),
    ("gamma2", pa.float64()),
    ("kappa", pa.float64()),
    ("dra", pa.float64()),
    ("ddec", pa.float64()),
    ("obj_type", pa.string()),
    ("major_arcsec", pa.float64()),
    ("minor_arcsec", pa.float64()),
    ("pa_deg", pa.float64()),
    ("sersic_n", pa.float64()),
    ("npoints", pa.int32()),
    ("internal_av", pa.float64()),
    ("internal_rv", pa.float64()),
    ("galactic_av", pa.float64()),
    ("galactic_rv", pa.float64()),
    ("line", pa.int64()),
    ("source", pa.string()),
])


def read_header(path: str | os.PathLike) -> Visit:
    """Read the header of an instance catalog, stopping at the first ``object``/``includeobj`` line.

    This is cheap (it never reads the objects), so it can run for thousands of catalogs while a
    workflow is being planned.  Absent optional keys (`OPTIONAL_DEFAULTS`) are defaulted, each with
    a `Dc2flowWarning`; unknown keys are kept in `Visit.extra`.

    Parameters:
        path:   the catalog, plain text or gzip (by a ``.gz`` suffix).

    Returns:
        the `Visit`.

    Raises:
        CatalogError: the file cannot be read, a required key is missing, a value is not a number,
            or ``filter`` is not 0-5.
    """
    with _open_catalog(path) as fh:
        visit, _ = _read_header_from(fh, str(path))
    return visit


class ObjectReader:
    """An iterator over the object record batches of one catalog; see `iter_objects`.

    The header is read when the reader is made, so `visit` is available at once; `skips` is
    ``None`` until the iteration is exhausted, then holds the `SkipCounts`.  Use it as a context
    manager (or call `close`) to release the open files when not iterating to the end.

    Parameters:
        path:        the catalog, plain text or gzip (by a ``.gz`` suffix).
        chunk_rows:  at most this many rows per batch [default: `DEFAULT_CHUNK_ROWS`].

    Raises:
        CatalogError: as `read_header` on construction; while iterating, for a malformed object
            line or a missing or unreadable included file.
        ConfigError: ``chunk_rows`` is not a positive integer.
    """

    def __init__(self, path: str | os.PathLike, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ConfigError("catalog.chunk_rows", chunk_rows, "must be a positive integer", ">= 1")
        self.path = str(path)
        self.chunk_rows = chunk_rows
        self.skips: SkipCounts | None = None
        self._n_read = 0
        self._n_kept = 0
        self._reasons: Counter[str] = Counter()
        self._unsupported: Counter[str] = Counter()
        self._sources: dict[str, None] = {self.path: None}  # an ordered set
        self._included: dict[str, tuple[str, int]] = {}  # real path -> the includeobj line
        # includes may name only files in the top-level catalog's folder and its subfolders
        self._include_root = os.path.dirname(os.path.abspath(self.path))
        self._file = _open_catalog(path)
        try:
            self.visit, pending = _read_header_from(self._file, self.path)
        except BaseException:
            self._file.close()
            raise
        self._batches = self._generate(pending)

    def __iter__(self) -> ObjectReader:
        return self

    def __next__(self) -> pa.RecordBatch:
        return next(self._batches)

    def close(self) -> None:
        """Stop reading and close every open file."""
        self._batches.close()
        self._file.close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _generate(self, pending: tuple[int, str] | None) -> Iterator[pa.RecordBatch]:
        rows: list[tuple] = []
        with self._file:
            stack = (os.path.realpath(self.path),)
            for row in self._rows(self._file, self.path, pending, included=False, stack=stack):
                rows.append(row)
                if len(rows) >= self.chunk_rows:
                    yield _to_batch(rows)
                    rows = []
            if rows:
                yield _to_batch(rows)
        self.skips = SkipCounts(
            n_read=self._n_read, n_kept=self._n_kept, **self._reasons,
            unsupported_names=tuple(sorted(self._unsupported.items())), sources=tuple(self._sources))
        logger.info("%s: %s", self.path, self.skips.summary())
        unknown = sorted(name for name in self._unsupported if name != _FITS_IMAGE)
        if unknown:
            logger.warning("%s: skipped objects of unknown type %s", self.path, ", ".join(unknown))

    def _rows(self, fh: IO[str], path: str, pending: tuple[int, str] | None, included: bool,
              stack: tuple[str, ...]) -> Iterator[tuple]:
        """Yield a row tuple for each kept object of one file, following its includes."""
        first = pending[0] + 1 if pending else 1
        numbered = _lines(fh, first)
        lines = itertools.chain([pending], numbered) if pending else numbered
        lineno = first - 1
        established = not included  # an included file is a catalog once it has an object/includeobj line
        try:
            for lineno, line in lines:
                if len(line) == _MAX_LINE and line[-1] != "\n":
                    raise _too_long(path, lineno)
                tokens = line.split()
                if not tokens or tokens[0].startswith("#"):
                    continue
                if tokens[0] not in (_OBJECT, _INCLUDEOBJ):
                    raise _misplaced_line(tokens, line, path, lineno, included, established,
                                          self._include_root)
                established = True
                if tokens[0] == _OBJECT:
                    self._n_read += 1
                    unsupported = _unsupported_type(tokens, path, lineno)
                    if unsupported is not None:
                        self._reasons["unsupported_type"] += 1
                        self._unsupported[unsupported] += 1
                        continue
                    row = _object_row(tokens, line, path, lineno)
                    if isinstance(row, str):
                        self._reasons[row] += 1
                        continue
                    self._n_kept += 1
                    yield row
                else:
                    yield from self._include(tokens, path, lineno, stack)
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise _read_error(path, lineno + 1, e) from e

    def _include(self, tokens: list[str], path: str, lineno: int,
                 stack: tuple[str, ...]) -> Iterator[tuple]:
        """Yield the rows of the file named by an ``includeobj`` line."""
        if len(tokens) != 2:
            raise CatalogError(path, lineno, "'includeobj' needs exactly one file name",
                               value=repr(" ".join(tokens[1:])))
        included = os.path.join(os.path.dirname(path), tokens[1])
        root = self._include_root
        if os.path.commonpath([root, os.path.normpath(os.path.abspath(included))]) != root:
            raise CatalogError(path, lineno, "'includeobj' names a file outside the catalog's folder",
                               value=included, fix=f"includes may name only files in {root} and its "
                               "subfolders; copy or link the file there")
        real = os.path.realpath(included)
        if real in stack:
            raise CatalogError(path, lineno, "'includeobj' includes a file that includes it",
                               value=included, fix="remove the circular includeobj line")
        if real in self._included:
            at_path, at_line = self._included[real]
            raise CatalogError(path, lineno, f"'includeobj' includes a file already included at "
                               f"{at_path}:{at_line}", value=included,
                               fix="remove one of the two includeobj lines (objects would be duplicated)")
        if len(self._included) >= _MAX_INCLUDES:
            raise CatalogError(path, lineno, f"more than {_MAX_INCLUDES} 'includeobj' files",
                               value=included, fix="merge the included files")
        self._included[real] = (path, lineno)
        try:
            fh = _open_text(included)
        except FileNotFoundError as e:
            raise CatalogError(path, lineno, "included file not found", value=included,
                               fix="check the includeobj path or copy the file beside the catalog") from e
        except OSError as e:
            raise CatalogError(path, lineno, "cannot open the included file",
                               value=f"{included}: {e.strerror}", fix="check its permissions") from e
        self._sources[included] = None
        with fh:
            yield from self._rows(fh, included, None, included=True, stack=stack + (real,))


def iter_objects(path: str | os.PathLike, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ObjectReader:
    """Stream the objects of a catalog as `pyarrow.RecordBatch` es of `OBJECT_SCHEMA`.

    The file is read line by line, following ``includeobj`` lines, so memory stays bounded by
    ``chunk_rows`` whatever the catalog's size.  The returned `ObjectReader` is an iterator of
    batches; its ``visit`` holds the header and its ``skips`` the `SkipCounts` once exhausted::

        with iter_objects("instcat.txt") as reader:
            for batch in reader:
                ...
        print(reader.skips.summary())

    Parameters:
        path:        the catalog, plain text or gzip (by a ``.gz`` suffix).
        chunk_rows:  at most this many rows per batch [default: `DEFAULT_CHUNK_ROWS`].

    Returns:
        an `ObjectReader`.

    Raises:
        CatalogError: see `ObjectReader`.
    """
    return ObjectReader(path, chunk_rows)


def read_catalog(path: str | os.PathLike, objects_out: str | os.PathLike | None = None,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[Visit, SkipCounts]:
    """Parse a whole catalog once; optionally write its objects to a Parquet file.

    The Parquet file is written to a temporary name beside ``objects_out`` and renamed into place
    only when the whole catalog has parsed: on any error there is no new output and an existing
    ``objects_out`` is left unchanged.  The skip summary is logged at INFO level.

    Parameters:
        path:         the catalog, plain text or gzip (by a ``.gz`` suffix).
        objects_out:  where to write the object table (`OBJECT_SCHEMA`), or None to only count
                      [default: None].
        chunk_rows:   rows per batch and Parquet row group [default: `DEFAULT_CHUNK_ROWS`].

    Returns:
        ``(visit, skips)``: the header as a `Visit` and the `SkipCounts`.

    Raises:
        CatalogError: the catalog or an included file is missing or malformed.
    """
    with iter_objects(path, chunk_rows) as reader:
        if objects_out is None:
            for _ in reader:
                pass
        else:
            with atomic_output(objects_out) as tmp, pq.ParquetWriter(tmp, OBJECT_SCHEMA) as writer:
                for batch in reader:
                    writer.write_batch(batch)
    assert reader.skips is not None  # set when the reader is exhausted
    return reader.visit, reader.skips


def read_objects(parquet_path: str | os.PathLike, columns: list[str] | None = None):
    """Read an object table written by `read_catalog` into a `pandas.DataFrame`.

    Parameters:
        parquet_path:  the Parquet file.
        columns:       read only these columns of `OBJECT_SCHEMA` [default: None, all].

    Returns:
        a `pandas.DataFrame` with the columns of `OBJECT_SCHEMA`.

    Raises:
        CatalogError: the file cannot be read or does not have the columns of `OBJECT_SCHEMA`.
    """
    try:
        table = pq.read_table(parquet_path, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise CatalogError(str(parquet_path), 0, "cannot read the object table", value=str(e),
                           fix="rerun 'dc2flow parse' on the catalog to rewrite it") from e
    expected = OBJECT_SCHEMA if columns is None else pa.schema([OBJECT_SCHEMA.field(c) for c in columns])
    if not table.schema.equals(expected):
        raise CatalogError(str(parquet_path), 0, "not a dc2flow object table",
                           value=", ".join(table.schema.names),
                           fix="rerun 'dc2flow parse' on the catalog to rewrite it")
    return table.to_pandas()


# ---------------------------------------------------------------------------------------------
# The parser: header lines, object lines, dust.

_OBJECT = "object"
_INCLUDEOBJ = "includeobj"

# Header key -> (Visit field, type).  Required and optional keys alike.
_HEADER_FIELDS: dict[str, tuple[str, type]] = {
    "obshistid": ("visit", int),
    "rightascension": ("ra_deg", float),
    "declination": ("dec_deg", float),
    "mjd": ("mjd", float),
    "filter": ("filter", int),
    "rotskypos": ("rotskypos_deg", float),
    "rottelpos": ("rottelpos_deg", float),
    "seeing": ("seeing_arcsec", float),
    "vistime": ("exptime_s", float),
    "seed": ("seed", int),
    "altitude": ("altitude_deg", float),
    "azimuth": ("azimuth_deg", float),
    "nsnap": ("nsnap", int),
    "seqnum": ("seqnum", int),
    "moonra": ("moon_ra_deg", float),
    "moondec": ("moon_dec_deg", float),
    "moonalt": ("moon_alt_deg", float),
    "moonphase": ("moon_phase", float),
    "dist2moon": ("dist2moon_deg", float),
    "sunalt": ("sun_alt_deg", float),
}

# Token positions on an 'object' line (token 0 is the word 'object').
_ID, _RA, _DEC, _MAGNORM, _SED, _REDSHIFT, _GAMMA1, _GAMMA2, _KAPPA, _DRA, _DDEC, _TYPE = range(1, 13)
_FIRST_PARAM = _TYPE + 1
_NUMERIC_FIELDS = (  # (name in messages, token position), in row order
    ("ra", _RA), ("dec", _DEC), ("magnorm", _MAGNORM), ("redshift", _REDSHIFT), ("gamma1", _GAMMA1),
    ("gamma2", _GAMMA2), ("kappa", _KAPPA), ("dra", _DRA), ("ddec", _DDEC),
)

# Object types we render -> the names of their parameters after TYPE.
_SHAPE_PARAMS: dict[str, tuple[str, ...]] = {
    "point": (),
    "sersic2d": ("a", "b", "pa", "n"),
    "knots": ("a", "b", "pa", "npoints"),
}
_FITS_SUFFIXES = (".fits", ".fits.gz")
_FITS_IMAGE = "FITS image"  # the name every FITS-image object is counted under

_DUST_NONE = "none"
_DUST_CCM = "CCM"
_DUST_MIN_TOKENS = 2  # 'none none'
_NONE_AV, _NONE_RV = 0.0, 3.1

_MAGNORM_MAX = 50.0  # magnorm >= this means "no flux" (imSim skips it)
_NONFINITE_TOKENS = frozenset({"inf", "-inf", "+inf", "nan"})
_MAX_INCLUDES = 10_000  # includeobj files per catalog
_MAX_LINE = 65536  # characters; a longer line is refused (a file of one endless line, /dev/zero)


def _lines(fh: IO[str], first: int = 1) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line, each read with a bounded ``readline``."""
    return enumerate(iter(lambda: fh.readline(_MAX_LINE), ""), first)


def _too_long(path: str, lineno: int) -> CatalogError:
    return CatalogError(path, lineno, f"line is longer than {_MAX_LINE} characters",
                        fix="this is not an instance catalog line; check the file")


def _read_error(path: str, lineno: int, e: BaseException) -> CatalogError:
    """The error for a file that cannot be read; a bad byte is placed on its own line."""
    if isinstance(e, UnicodeDecodeError):
        lineno = _bad_byte_line(path) or lineno
        return CatalogError(path, lineno, "line is not valid UTF-8 text", value=e.reason,
                            fix="fix the line's encoding (catalogs are UTF-8)")
    return CatalogError(path, lineno, "cannot read the file", value=str(e),
                        fix="check that the file is complete (copy or gzip it again)")


def _bad_byte_line(path: str) -> int:
    """The 1-based line holding the first byte that is not UTF-8, or 0 if none is found."""
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as fh:
            for lineno, raw in enumerate(iter(lambda: fh.readline(_MAX_LINE), b""), 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    if e.reason != "unexpected end of data" or raw.endswith(b"\n"):
                        return lineno
    except (OSError, EOFError):
        pass
    return 0


def _open_text(path: str) -> IO[str]:
    """Open a catalog file as text: gzip when its name ends in ``.gz``."""
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")  # -sig: a leading BOM is stripped


def _open_catalog(path: str | os.PathLike) -> IO[str]:
    """Open the top-level catalog, turning a failure into a `CatalogError`."""
    try:
        return _open_text(os.fspath(path))
    except OSError as e:
        raise CatalogError(str(path), 0, "cannot open the catalog", value=e.strerror,
                           fix="check the path") from e


def _read_header_from(fh: IO[str], path: str) -> tuple[Visit, tuple[int, str] | None]:
    """Read header lines up to the first object/includeobj line.

    Returns the `Visit` and that first body line as ``(line number, text)``, or None when the
    file has no body.  The file is left positioned just after that line.
    """
    values: dict[str, tuple[str, int]] = {}  # key -> (value text, line number)
    last_line = 0
    pending = None
    lineno = 0
    try:
        for lineno, line in _lines(fh):
            if len(line) == _MAX_LINE and line[-1] != "\n":
                raise _too_long(path, lineno)
            parts = line.split(None, 1)
            if not parts or parts[0].startswith("#"):
                continue
            if parts[0] in (_OBJECT, _INCLUDEOBJ):
                pending = (lineno, line)
                break
            text = parts[1].strip() if len(parts) > 1 else ""
            if parts[0] in values and values[parts[0]][0] != text:
                before, at = values[parts[0]]
                raise CatalogError(path, lineno, f"header key '{parts[0]}' is given again with another "
                                   f"value (line {at} has {before!r})", value=repr(text),
                                   fix="keep one of the two lines")
            values[parts[0]] = (text, lineno)
            last_line = lineno
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise _read_error(path, lineno + 1, e) from e
    return _visit_from_header(values, path, last_line), pending


def _visit_from_header(values: dict[str, tuple[str, int]], path: str, last_line: int) -> Visit:
    """Check the header's keys and values and build the `Visit`."""
    missing = [key for key in REQUIRED_KEYS if key not in values]
    if missing:
        others = f"also missing: {', '.join(missing[1:])}" if len(missing) > 1 else None
        raise CatalogError(path, last_line, f"header has no '{missing[0]}' key", value=others,
                           fix="add the key to the header")
    fields: dict[str, Any] = {}
    for key, (name, kind) in _HEADER_FIELDS.items():
        if key in values:
            text, lineno = values[key]
            fields[name] = _header_number(key, text, kind, path, lineno)
        elif key in ROTATION_KEYS:
            fields[name] = None
        else:
            default = OPTIONAL_DEFAULTS[key]
            warnings.warn(f"{path}: header has no '{key}' key, using {default!r}; "
                          f"add the key to the header to choose the value.", Dc2flowWarning, stacklevel=4)
            fields[name] = default
    if not 0 <= fields["filter"] < len(BANDS):
        raise CatalogError(path, values["filter"][1], "filter is not 0-5", value=fields["filter"],
                           fix=f"use 0-5 for {', '.join(BANDS)}")
    if not 0 < fields["altitude_deg"] <= 90:
        raise CatalogError(path, values["altitude"][1], "altitude is not in (0, 90] degrees",
                           value=fields["altitude_deg"], fix="a visit is observed above the horizon")
    for key, name in (("obshistid", "visit"), ("rightascension", "ra_deg"), ("declination", "dec_deg"),
                      ("seeing", "seeing_arcsec"), ("vistime", "exptime_s")):
        _check_range(key, fields[name], path, values[key][1])
    given = [key for key in ROTATION_KEYS if key in values]
    if not given:
        raise CatalogError(path, last_line, "header has neither 'rotskypos' nor 'rottelpos'",
                           fix="add one of them (the other is derived from the parallactic angle)")
    band = BANDS[fields["filter"]]
    if len(given) == 1:
        from .wcs import rotation_angles

        fields["rotskypos_deg"], fields["rottelpos_deg"] = rotation_angles(
            fields["ra_deg"], fields["dec_deg"], fields["mjd"], band, fields["rotskypos_deg"], fields["rottelpos_deg"])
        derived = "rottelpos" if given == ["rotskypos"] else "rotskypos"
        value = fields[f"{derived}_deg"]
        warnings.warn(f"{path}: header has no '{derived}' key, derived {value:.4f} from '{given[0]}' and the "
                      f"parallactic angle at the visit's time (rotTelPos = rotSkyPos + q); add the key to choose "
                      f"the value.", Dc2flowWarning, stacklevel=4)
    extra = tuple(sorted((key, text) for key, (text, _) in values.items() if key not in _HEADER_FIELDS))
    return Visit(band=band, path=path, extra=extra, rotation_given="both" if len(given) == 2 else given[0], **fields)


def _header_number(key: str, text: str, kind: type, path: str, lineno: int) -> float | int:
    """Parse one header value as a finite float, or as an int (``3`` or ``3.0``)."""
    try:
        value = float(text)
    except ValueError:
        raise CatalogError(path, lineno, f"header key '{key}' is not a number", value=repr(text),
                           fix="give it a numeric value") from None
    if not math.isfinite(value):
        raise CatalogError(path, lineno, f"header key '{key}' is not finite", value=repr(text),
                           fix="give it a finite value")
    if kind is int:
        if not value.is_integer():
            raise CatalogError(path, lineno, f"header key '{key}' is not a whole number",
                               value=repr(text), fix="give it an integer value")
        return int(text) if text.lstrip("+-").isdigit() else int(value)
    return value


def _misplaced_line(tokens: list[str], line: str, path: str, lineno: int, included: bool,
                    established: bool, include_root: str) -> CatalogError:
    """The error for a line that is neither an object, an includeobj nor a comment.

    In an included file that has shown no object or includeobj line yet (it may be any file,
    ``/etc/passwd`` or a key), nothing of the line is quoted; after one, only its first word,
    bounded and reduced to printable ASCII.
    """
    if included and not established:
        return CatalogError(path, lineno, "included file is not an instance catalog (this line is not an "
                            "'object', 'includeobj' or '#' line)",
                            fix=f"includeobj must name an instance catalog file in {include_root} "
                                "or its subfolders")
    word = _shown_token(tokens[0])
    if included:
        return CatalogError(path, lineno, f"{word} line in an included file",
                            fix="included files hold only 'object', 'includeobj' and '#' lines; "
                                "move header keys to the top of the including catalog")
    return CatalogError(path, lineno, f"{word} line after the first object", value=repr(line.strip()[:80]),
                        fix="move header keys above the first 'object' or 'includeobj' line")


_SHOWN_TOKEN_CHARS = 32


def _shown_token(text: str) -> str:
    """A token as an error may quote it: printable ASCII only (others as ``?``), at most 32 characters."""
    clean = "".join(c if "!" <= c <= "~" else "?" for c in text[:_SHOWN_TOKEN_CHARS])
    return repr(clean + ("..." if len(text) > _SHOWN_TOKEN_CHARS else ""))


def _unsupported_type(tokens: list[str], path: str, lineno: int) -> str | None:
    """The name to count an object under if its TYPE is one we do not render, else None.

    FITS-image objects count as ``"FITS image"``, other unknown words by their own name.  A TYPE
    token that looks like a shifted field (a number, a dust keyword, or a known type appearing
    elsewhere on the line) means fields are missing or extra: that is an error, not a skip.
    """
    if len(tokens) <= _TYPE or tokens[_TYPE] in _SHAPE_PARAMS:
        return None
    word = tokens[_TYPE]
    if word.lower().endswith(_FITS_SUFFIXES):
        return _FITS_IMAGE
    shifted = _is_number(word) or word in (_DUST_NONE, _DUST_CCM) or any(
        t in _SHAPE_PARAMS for t in tokens[_ID + 1:])
    if shifted:
        raise CatalogError(path, lineno, f"'object' line has {word!r} where its type belongs (field "
                           f"{_TYPE + 1})", value=repr(" ".join(tokens[_ID:_FIRST_PARAM])),
                           fix="check the line for missing or extra fields")
    return word


def _object_row(tokens: list[str], line: str, path: str, lineno: int) -> tuple | str:
    """Turn the tokens of an object line of a rendered type into a row of `OBJECT_SCHEMA`.

    Returns the row tuple, or the name of the `SkipCounts` reason when the object is skipped.
    Raises `CatalogError` when the line is malformed.
    """
    n = len(tokens)
    obj_type = tokens[_TYPE] if n > _TYPE else _guess_type(tokens)
    param_names = _SHAPE_PARAMS[obj_type]
    needed = _FIRST_PARAM + len(param_names) + _DUST_MIN_TOKENS
    if n < needed:
        raise CatalogError(path, lineno, f"'object' line has {n} fields, {obj_type} needs {needed} or more",
                           value=repr(line.strip()[:80]))
    fixed = _numbers(tokens, _NUMERIC_FIELDS, path, lineno)
    params = _numbers(tokens, tuple(zip(param_names, range(_FIRST_PARAM, n))), path, lineno)
    pos = _FIRST_PARAM + len(param_names)
    internal_av, internal_rv, pos = _dust(tokens, pos, "internal", path, lineno)
    galactic_av, galactic_rv, pos = _dust(tokens, pos, "galactic", path, lineno)
    if pos != n:
        raise CatalogError(path, lineno, f"'object' line has {n} fields, {obj_type} with this dust "
                           f"takes {pos}", value="extra: " + repr(" ".join(tokens[pos:])))

    numbers = fixed + params + [internal_av, internal_rv, galactic_av, galactic_rv]
    if not all(map(math.isfinite, numbers)) or _has_nonfinite_token(tokens, line):
        return "inf_or_nan"
    ra, dec, magnorm, redshift, gamma1, gamma2, kappa, dra, ddec = fixed
    if magnorm >= _MAGNORM_MAX:
        return "magnorm_ge_50"
    major, minor, pa_deg, sersic_n, npoints = _shape(obj_type, params, path, lineno)
    if major < minor:
        return "a_lt_b"
    if obj_type == "knots" and npoints <= 0:
        return "knots_npoints_le_0"
    # the common case in one expression (VALUE_RANGES' bounds); _check_object_ranges names the culprit
    if not (0.0 <= ra <= 360.0 and -90.0 <= dec <= 90.0 and magnorm >= -10.0 and 0.0 <= redshift <= 20.0
            and kappa < 1.0 and (1.0 - kappa) ** 2 - (gamma1 * gamma1 + gamma2 * gamma2) >= 0.25
            and (obj_type == "point" or (0.0 < minor and major <= 10.0 and (
                0.3 <= sersic_n <= 6.2 if obj_type == "sersic2d" else npoints <= 1000)))):
        _check_object_ranges(obj_type, ra, dec, magnorm, redshift, gamma1, gamma2, kappa, major, minor,
                             sersic_n, npoints, path, lineno)
    return (tokens[_ID], ra, dec, magnorm, tokens[_SED], redshift, gamma1, gamma2, kappa, dra, ddec,
            obj_type, major, minor, pa_deg, sersic_n, npoints,
            internal_av, internal_rv, galactic_av, galactic_rv, lineno, path)


def _check_object_ranges(obj_type: str, ra: float, dec: float, magnorm: float, redshift: float,
                         gamma1: float, gamma2: float, kappa: float, major: float, minor: float,
                         sersic_n: float, npoints: int, path: str, lineno: int) -> None:
    """Refuse an object value outside `VALUE_RANGES`, naming file:line and the range."""
    for name, value in (("ra", ra), ("dec", dec), ("magnorm", magnorm), ("redshift", redshift),
                        ("kappa", kappa)):
        _check_range(name, value, path, lineno)
    _check_range("reduced shear", math.hypot(gamma1, gamma2) / (1.0 - kappa), path, lineno)
    _check_range("magnification", 1.0 / ((1.0 - kappa) ** 2 - (gamma1**2 + gamma2**2)), path, lineno)
    if obj_type == "point":
        return
    _check_range("major axis", major, path, lineno)
    _check_range("minor axis", minor, path, lineno)
    if obj_type == "sersic2d":
        _check_range("sersic n", sersic_n, path, lineno)
    else:
        _check_range("knots npoints", npoints, path, lineno)


def _guess_type(tokens: list[str]) -> str:
    """The type named anywhere on a line too short to have one in place (for the message)."""
    return next((t for t in tokens[_ID + 1:] if t in _SHAPE_PARAMS), "point")


def _shape(obj_type: str, params: list[float], path: str,
           lineno: int) -> tuple[float, float, float, float, int]:
    """``(major, minor, pa, sersic_n, npoints)`` from a type's parameters, zeros where unused."""
    if obj_type == "point":
        return 0.0, 0.0, 0.0, 0.0, 0
    major, minor, pa_deg, last = params
    if obj_type == "sersic2d":
        return major, minor, pa_deg, last, 0
    if not last.is_integer():
        raise CatalogError(path, lineno, "knots npoints is not a whole number", value=repr(last),
                           fix="give the number of knots as an integer")
    return major, minor, pa_deg, 0.0, int(last)


def _dust(tokens: list[str], pos: int, which: str, path: str, lineno: int) -> tuple[float, float, int]:
    """Parse one dust entry at ``tokens[pos]``: ``(A_V, R_V, position after it)``."""
    word = tokens[pos] if pos < len(tokens) else None
    if word == _DUST_NONE:
        return _NONE_AV, _NONE_RV, pos + 1
    if word == _DUST_CCM:
        if pos + 3 > len(tokens):
            raise CatalogError(path, lineno, f"{which} dust 'CCM' needs A_V and R_V",
                               value=repr(" ".join(tokens[pos:])))
        av, rv = _numbers(tokens, ((f"{which} A_V", pos + 1), (f"{which} R_V", pos + 2)), path, lineno)
        return av, rv, pos + 3
    if word is None:
        raise CatalogError(path, lineno, f"'object' line ends before its {which} dust",
                           value=repr(" ".join(tokens[_TYPE:])))
    raise CatalogError(path, lineno, f"{which} dust is neither 'none' nor 'CCM'", value=repr(word))


def _numbers(tokens: list[str], fields: tuple[tuple[str, int], ...], path: str, lineno: int) -> list[float]:
    """Parse the named token positions as floats; name the first that is not a number."""
    try:
        return [float(tokens[i]) for _, i in fields]
    except ValueError:
        for name, i in fields:
            if not _is_number(tokens[i]):
                raise CatalogError(path, lineno, f"{name} is not a number", value=repr(tokens[i])) from None
        raise


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _has_nonfinite_token(tokens: list[str], line: str) -> bool:
    """True if any token is exactly inf, -inf, +inf or nan (any case), as imSim checks."""
    lower = line.lower()
    if "inf" not in lower and "nan" not in lower:
        return False
    return any(t.lower() in _NONFINITE_TOKENS for t in tokens)


def _to_batch(rows: list[tuple]) -> pa.RecordBatch:
    """Turn row tuples (in `OBJECT_SCHEMA` order) into a record batch."""
    columns = zip(*rows)
    arrays = [pa.array(values, type=field.type) for values, field in zip(columns, OBJECT_SCHEMA)]
    return pa.RecordBatch.from_arrays(arrays, schema=OBJECT_SCHEMA)
