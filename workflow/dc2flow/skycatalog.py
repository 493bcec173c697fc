"""Read a visit's objects from a skyCatalogs catalog (imSim v2's input) into the object table.

A skyCatalogs catalog is a YAML configuration (``skycatalog_root``, ``catalog_dir``,
``SED_models``, ``MW_extinction_values``, ``object_types``) beside Parquet files, one per
object type and HEALPix pixel, named by each type's ``file_template`` (a regular expression with a
``healpix`` group).  :func:`read_sky_catalog` reads the stars (``star``) and the cosmoDC2 galaxies
(``galaxy``, made of the components ``bulge``, ``disk`` and optionally ``knots``) within
``radius_deg`` of the visit's boresight and writes them as rows of
:data:`dc2flow.catalog.OBJECT_SCHEMA`, the table ``dc2flow parse`` writes for an instance
catalog, so partitioning and rendering take it unchanged.  The translation is skyCatalogs' own
translation to instance catalogs (``skycatalogs/utils/translate_utils.py``):

- a **star** is a ``point`` of ``magnorm``, SED ``sed_filepath`` (relative to ``scene.sed_dir``,
  as skyCatalogs' is to ``SIMS_SED_LIBRARY_DIR``), no redshift, lensing or internal dust, and
  Milky-Way dust ``MW_av`` with ``MW_rv`` (the YAML's constant ``r_v`` where the column is absent);
- a **galaxy** gives one row per component, ``{galaxy_id}_{component}``: ``bulge`` and ``disk`` are
  ``sersic2d`` of major/minor axes ``size_{c}_true``/``size_minor_{c}_true`` (arcsec), position
  angle ``position_angle_unlensed`` and index ``sersic_{c}``; ``knots`` are ``knots`` with the
  disk's axes and ``n_knots`` points; each with ``{c}_magnorm``, ``redshift``, shear ``shear_1``,
  ``shear_2``, ``convergence`` and MW dust as the stars; the SED is the component's tophat values
  ``sed_val_{c}`` over the YAML's ``SED_models: tophat: bins`` (``[start, width]`` in the YAML's
  units, angstrom), encoded in the SED name (:func:`dc2flow.photometry.tophat_sed_name`), so the
  flux is computed from the tophat SED through the band (:mod:`dc2flow.photometry`).  Its level is
  imSim v2's (skyCatalogs' ``TophatSedFactory``): the tophat's absolute flux at the luminosity
  distance of ``redshift_hubble`` in the YAML's ``Cosmology``, written as the row's magnorm
  (:func:`tophat_magnorm`).  The catalog's own ``{c}_magnorm`` columns (what skyCatalogs writes into
  instance catalogs) are not used: for the shared galaxies they are 0.02-0.08 mag off that level.

The ``skycatalogs`` package (PyPI, 2.5.0) is **not** used: it requires ``healpy``, ``lsst-sphgeom``,
``lsstdesc-diffsky`` (which brings ``jax``), ``dustmaps``, ``esutil`` and ``h5py`` even to read a
star, several of them large or compiled, none needed for these two object types; the documented
Parquet columns above are read with ``pyarrow`` instead.  Differences from imSim's skyCatalogs path,
stated: Milky-Way dust uses the project's CCM89 law (skyCatalogs' uses F19, a few millimag in r);
object types other than ``star`` and ``galaxy``
(SNe, diffsky galaxies, Gaia stars, ...) are not read and are named in a warning.  Files are
chosen by their template, not by HEALPix pixel (that needs ``healpy``): every matching file's
``ra``/``dec`` columns are read and the rest only for the rows within the radius.

A missing file is not an error (skyCatalogs, too, reads the files a pixel has), but never silent:
when a type's ``file_template`` matches no file, or matches none for a HEALPix pixel that the
other type's files have, a warning names the YAML's ``file:line`` of that template, the file name
it expects (the template with that pixel: ``galaxy_9683_449053_det94.parquet`` for the shared
``sky_cat_9683.yaml``, whose folder holds ``galaxy_9683_det94_det95_single_objs.parquet`` instead)
and the folder's Parquet files that no template matches; the visit's ``sources.json`` (``skips``)
says it too.  Such a visit has no objects of that type.

Objects are skipped and counted as the instance-catalog parser does: magnorm >= 50 or not finite,
major < minor axis, knots with ``n_knots`` <= 0, and components whose tophat values are all zero.
Values out of :data:`dc2flow.catalog.VALUE_RANGES` raise :class:`~dc2flow.errors.CatalogError`
naming the file and row (0-based row of the Parquet file).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .config import load_yaml
from .catalog import OBJECT_SCHEMA, Visit, _check_object_ranges
from .errors import CatalogError
from .io import atomic_output
from .photometry import tophat_sed_name

__all__ = ["DEFAULT_RADIUS_DEG", "SkyCatalog", "SkyCatalogCounts", "load_sky_catalog", "read_sky_catalog"]

logger = logging.getLogger(__name__)

#: Objects within this angle of the boresight are read: the LSSTCam focal plane's corner sensors
#: reach ~2.05 degrees from the centre (1.75 deg half-diagonal of the science rafts' square, 3.5
#: degrees across), plus a margin for stamps that reach in from outside.
DEFAULT_RADIUS_DEG = 2.1

_COMPONENTS = ("bulge", "disk", "knots")
_ANGSTROM_PER = {"angstrom": 10.0, "nm": 1.0}
_NONE_AV, _NONE_RV = 0.0, 3.1  # no internal dust, as catalog's 'none'
_MAGNORM_MAX = 50.0


@dataclass(frozen=True)
class SkyCatalog:
    """A skyCatalogs YAML, resolved.

    Parameters:
        path:         the YAML file.
        catalog_dir:  the folder holding the Parquet files (``skycatalog_root``/``catalog_dir``).
        star_files:   the star files (matching ``object_types: star: file_template``), sorted.
        galaxy_files: the galaxy files, sorted.
        tophat_lo_nm, tophat_width_nm:  the tophat bins in nm.
        mw_rv:        the YAML's constant Milky-Way R_V.
        unsupported:  object types with a ``file_template`` this reader does not read.
        cosmology:    the YAML's ``Cosmology`` (``H0``, ``Om0``, ``Ob0``, ...) as sorted pairs.
        missing:      per object type whose template expects files the folder lacks: (a few words for the
                      counts' summary, the warning).
    """

    path: str
    catalog_dir: str
    star_files: tuple[str, ...]
    galaxy_files: tuple[str, ...]
    tophat_lo_nm: tuple[float, ...]
    tophat_width_nm: tuple[float, ...]
    mw_rv: float
    unsupported: tuple[str, ...] = ()
    cosmology: tuple[tuple[str, float], ...] = ()
    missing: tuple[tuple[str, str], ...] = ()


@dataclass
class SkyCatalogCounts:
    """What :func:`read_sky_catalog` read: files, stars, galaxies and rows kept, skips by reason."""

    files: list[str] = field(default_factory=list)
    n_stars: int = 0
    n_galaxies: int = 0
    n_rows: int = 0
    skipped: Counter = field(default_factory=Counter)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.n_stars} stars and {self.n_galaxies} galaxies within the radius: {self.n_rows} rows "
                f"from {len(self.files)} files")
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        if self.missing:
            text += "; not read: " + "; ".join(self.missing)
        return text


def load_sky_catalog(path: str | os.PathLike, sky_catalog_root: str | os.PathLike | None = None) -> SkyCatalog:
    """Read a skyCatalogs YAML and find its star and galaxy files.

    Parameters:
        path:              the YAML.
        sky_catalog_root:  replaces the YAML's ``skycatalog_root`` [default: None: the YAML's,
                           relative to the YAML's folder when relative].

    Raises:
        CatalogError: the YAML is missing or malformed, the catalog folder does not exist, or a
            type's ``file_template`` is not a regular expression.
    """
    import yaml

    path = os.fspath(path)
    try:
        with open(path) as fh:
            doc = load_yaml(fh)
    except OSError as e:
        raise CatalogError(path, 0, "cannot read the sky catalog", value=e.strerror, fix="check the path") from e
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", -1) + 1
        raise CatalogError(path, line, "not valid YAML", value=str(e).splitlines()[0],
                           fix="give a skyCatalogs configuration") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("object_types"), dict):
        raise CatalogError(path, 0, "not a skyCatalogs configuration (no 'object_types' mapping)",
                           fix="give a skyCatalogs configuration YAML")
    root = os.fspath(sky_catalog_root) if sky_catalog_root else str(doc.get("skycatalog_root") or ".")
    if not os.path.isabs(root) and not sky_catalog_root:
        root = os.path.join(os.path.dirname(os.path.abspath(path)), root)
    catalog_dir = os.path.normpath(os.path.join(root, str(doc.get("catalog_dir") or ".")))
    if not os.path.isdir(catalog_dir):
        raise CatalogError(path, 0, "the catalog folder does not exist", value=catalog_dir,
                           fix="set sky_catalog_root to the folder holding the catalog's files")
    names = sorted(os.listdir(catalog_dir))
    types = doc["object_types"]

    def template(kind: str) -> re.Pattern | None:
        spec = types.get(kind)
        if not isinstance(spec, dict) or "file_template" not in spec:
            return None
        try:
            pattern = re.compile(str(spec["file_template"]))
        except re.error as e:
            raise CatalogError(path, _template_line(path, kind),
                               f"object type '{kind}': file_template is not a regular expression",
                               value=str(e), fix="fix the template") from e
        if spec.get("data_file_type", "parquet") != "parquet":
            raise CatalogError(path, 0, f"object type '{kind}': data_file_type is not parquet",
                               value=spec.get("data_file_type"), fix="only Parquet sky catalogs are read")
        return pattern

    patterns = {kind: template(kind) for kind in ("star", "galaxy")}
    found = {kind: tuple(n for n in names if p.fullmatch(n)) for kind, p in patterns.items() if p is not None}
    missing = _missing_files(path, catalog_dir, names, patterns, found, types)
    for _, line in missing:
        logger.warning("%s", line)

    lo, width = _tophat_bins(doc, path)
    rv = doc.get("MW_extinction_values", {}).get("r_v", {}).get("value", 3.1)
    unsupported = tuple(sorted(k for k, v in types.items() if k not in ("star", "galaxy")
                               and isinstance(v, dict) and "file_template" in v))
    if unsupported:
        logger.warning("%s: object types not read (only 'star' and 'galaxy' are): %s", path, ", ".join(unsupported))
    cosmology = doc.get("Cosmology") or {}
    if not isinstance(cosmology, dict) or not all(isinstance(v, (int, float)) for v in cosmology.values()):
        raise CatalogError(path, 0, "Cosmology is not a mapping of numbers", value=repr(cosmology)[:80],
                           fix="give H0, Om0 (and Ob0, ...) as numbers")
    return SkyCatalog(path=path, catalog_dir=catalog_dir,
                      star_files=tuple(os.path.join(catalog_dir, n) for n in found.get("star", ())),
                      galaxy_files=tuple(os.path.join(catalog_dir, n) for n in found.get("galaxy", ())),
                      tophat_lo_nm=lo, tophat_width_nm=width, mw_rv=float(rv), unsupported=unsupported,
                      cosmology=tuple(sorted((str(k), float(v)) for k, v in cosmology.items())), missing=missing)


def _template_line(path: str, kind: str) -> int:
    """1-based line of ``object_types: <kind>: file_template`` in the YAML, or 0."""
    import yaml

    try:
        with open(path) as fh:
            node = yaml.compose(fh)
    except (OSError, yaml.YAMLError):
        return 0
    for key in ("object_types", kind, "file_template"):
        if not isinstance(node, yaml.MappingNode):
            return 0
        node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        if node is None:
            return 0
    return node.start_mark.line + 1


def _expected_name(pattern: re.Pattern, healpix: str) -> str | None:
    """The file name ``pattern`` gives HEALPix pixel ``healpix`` (its ``healpix`` group filled in,
    escapes undone), or None when the template is not that simple."""
    name = re.sub(r"\(\?P<healpix>[^()]*\)", healpix, pattern.pattern, count=1)
    name = re.sub(r"\\(.)", r"\1", name)
    return name if pattern.fullmatch(name) else None


def _missing_files(path: str, catalog_dir: str, names: list[str], patterns: dict, found: dict,
                   types: dict) -> tuple[tuple[str, str], ...]:
    """(summary, warning) per object type whose template matches no file, or none for a HEALPix pixel
    that another type's files have (see the module docstring)."""
    pixels = {kind: {m.group("healpix") for m in map(patterns[kind].fullmatch, files)
                     if "healpix" in patterns[kind].groupindex}
              for kind, files in found.items()}
    every = set().union(*pixels.values())
    templates = [re.compile(str(spec["file_template"])) for spec in types.values()
                 if isinstance(spec, dict) and "file_template" in spec and _compiles(spec["file_template"])]
    others = [n for n in names if n.endswith(".parquet") and not any(t.fullmatch(n) for t in templates)]
    lines = []
    for kind, files in found.items():
        lacking = sorted(every - pixels[kind])
        if files and not lacking:
            continue
        expected = [e for e in (_expected_name(patterns[kind], hp) for hp in lacking) if e]
        where = f"{path}:{_template_line(path, kind)}"
        line = f"{where}: object type '{kind}': its file_template '{patterns[kind].pattern}' matches no file in {catalog_dir}"
        if lacking:
            having = " and ".join(k for k in pixels if k != kind and pixels[k] & set(lacking))
            line += f" for HEALPix pixel {', '.join(lacking)} (which the {having} files have)"
        if expected:
            line += f": {', '.join(expected)} {'is' if len(expected) == 1 else 'are'} missing"
        line += f", so {'those pixels have' if files else 'the visit has'} no {kind} objects"
        if others:
            line += f"; Parquet files there that no file_template matches: {', '.join(others)}"
        summary = f"{kind} objects ({', '.join(expected) or 'no file'} missing, {os.path.basename(where)})"
        lines.append((summary, line + " (fix the template or add the file)"))
    return tuple(lines)


def _compiles(template) -> bool:
    try:
        re.compile(str(template))
    except re.error:
        return False
    return True


#: cosmoDC2's tophat L_nu unit in W/Hz (gcr-catalogs' SCHEMA.md; skyCatalogs' TophatSedFactory).
TOPHAT_W_PER_HZ = 4.4659e13
_MPC_M = 3.085677581491367e22
_HC_ERG_NM = 6.62607015e-27 * 2.99792458e17
_C_NM_S = 2.99792458e17


def tophat_magnorm(cat: SkyCatalog, values: np.ndarray, z_hubble: np.ndarray) -> np.ndarray:
    """The magnorm of tophat SEDs at their luminosity distance: the level skyCatalogs (and imSim v2)
    give them, ``f_lambda = L_nu * dnu / dlambda / (4 pi d_L(z_hubble)^2)`` in the bin holding
    500 nm, as :data:`dc2flow.photometry.AB0_PHOTONS_500NM` magnitudes; ``inf`` where that bin is zero.

    Parameters:
        cat:       the catalog (its bins and ``Cosmology``: astropy's ``FlatLambdaCDM``).
        values:    objects x bins, in cosmoDC2's unit (:data:`TOPHAT_W_PER_HZ`).
        z_hubble:  each object's cosmological redshift (``redshift_hubble``).
    """
    from astropy.cosmology import FlatLambdaCDM

    from .photometry import AB0_PHOTONS_500NM, MAGNORM_WAVELENGTH_NM

    allowed = FlatLambdaCDM.__init__.__code__.co_varnames[1:]
    cosmology = FlatLambdaCDM(**{k: v for k, v in cat.cosmology if k in allowed})
    lo = np.asarray(cat.tophat_lo_nm)
    hi = lo + np.asarray(cat.tophat_width_nm)
    k = int(np.searchsorted(lo, MAGNORM_WAVELENGTH_NM, side="right") - 1)
    if k < 0 or MAGNORM_WAVELENGTH_NM >= hi[k]:
        return np.full(len(values), np.inf)
    llambda_w_nm = np.asarray(values)[:, k] * TOPHAT_W_PER_HZ * _C_NM_S * (1 / lo[k] - 1 / hi[k]) / (hi[k] - lo[k])
    dl_cm = np.asarray(cosmology.luminosity_distance(np.asarray(z_hubble, dtype=float)).value) * _MPC_M * 100.0
    flambda = llambda_w_nm * 1e7 / (4 * np.pi * dl_cm**2)  # erg/s/cm^2/nm
    fphot = flambda * MAGNORM_WAVELENGTH_NM / _HC_ERG_NM
    with np.errstate(divide="ignore"):
        return -2.5 * np.log10(fphot / AB0_PHOTONS_500NM)


def _tophat_bins(doc: dict, path: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    tophat = (doc.get("SED_models") or {}).get("tophat")
    if tophat is None:
        return (), ()
    units = str(tophat.get("units", "angstrom")).lower()
    bins = tophat.get("bins")
    if units not in _ANGSTROM_PER or not isinstance(bins, list) or not bins or not all(
            isinstance(b, list) and len(b) == 2 for b in bins):
        raise CatalogError(path, 0, "SED_models: tophat needs 'bins' as [start, width] pairs in angstrom or nm",
                           value=f"units {units!r}", fix="fix the YAML")
    scale = _ANGSTROM_PER[units]
    return tuple(float(b[0]) / scale for b in bins), tuple(float(b[1]) / scale for b in bins)


def _angular_distance_deg(ra, dec, ra0, dec0):
    ra, dec = np.radians(ra), np.radians(dec)
    ra0, dec0 = math.radians(ra0), math.radians(dec0)
    h = np.sin((dec - dec0) / 2) ** 2 + np.cos(dec) * math.cos(dec0) * np.sin((ra - ra0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def _read_near(path: str, columns: list[str], optional: list[str], visit: Visit, radius_deg: float,
               catalog: str) -> tuple[dict, np.ndarray]:
    """The named columns (as numpy/lists) of the rows within the radius, and those rows' numbers."""
    try:
        schema = pq.read_schema(path)
        missing = [c for c in ["ra", "dec", *columns] if c not in schema.names]
        if missing:
            raise CatalogError(path, 0, f"sky-catalog file has no column '{missing[0]}'",
                               value=", ".join(missing) if len(missing) > 1 else None,
                               fix=f"the files of {catalog} must have skyCatalogs' columns")
        pos = pq.read_table(path, columns=["ra", "dec"])
        rows = np.flatnonzero(_angular_distance_deg(pos["ra"].to_numpy(), pos["dec"].to_numpy(),
                                                    visit.ra_deg, visit.dec_deg) <= radius_deg)
        wanted = ["ra", "dec", *columns, *(c for c in optional if c in schema.names)]
        table = pq.read_table(path, columns=wanted).take(pa.array(rows, type=pa.int64()))
    except (OSError, pa.ArrowException) as e:
        raise CatalogError(path, 0, "cannot read the sky-catalog file", value=str(e),
                           fix="check that the file is a complete Parquet file") from e
    return {name: table[name].to_pylist() for name in table.column_names}, rows


def _star_rows(path: str, cat: SkyCatalog, visit: Visit, radius_deg: float, counts: SkyCatalogCounts):
    data, rows = _read_near(path, ["id", "magnorm", "sed_filepath", "MW_av"], ["MW_rv"], visit, radius_deg, cat.path)
    out = []
    for k, row in enumerate(rows):
        counts.n_stars += 1
        rv = data["MW_rv"][k] if "MW_rv" in data and data["MW_rv"][k] is not None else cat.mw_rv
        ra, dec, magnorm, av = data["ra"][k], data["dec"][k], data["magnorm"][k], data["MW_av"][k]
        if not _finite(ra, dec, magnorm, av, rv):
            counts.skipped["inf/nan"] += 1
            continue
        if magnorm >= _MAGNORM_MAX:
            counts.skipped["magnorm>=50"] += 1
            continue
        where = f"{path} row {row}"
        _check_object_ranges("point", ra, dec, magnorm, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, where, 0)
        out.append((str(data["id"][k]), ra, dec, magnorm, str(data["sed_filepath"][k]), 0.0, 0.0, 0.0, 0.0, 0.0,
                    0.0, "point", 0.0, 0.0, 0.0, 0.0, 0, _NONE_AV, _NONE_RV, float(av), float(rv), int(row), path))
    return out


_GALAXY_COLUMNS = ["galaxy_id", "redshift", "shear_1", "shear_2", "convergence", "position_angle_unlensed",
                   "size_bulge_true", "size_minor_bulge_true", "sersic_bulge", "sed_val_bulge",
                   "size_disk_true", "size_minor_disk_true", "sersic_disk", "sed_val_disk", "MW_av", "redshift_hubble"]
_GALAXY_OPTIONAL = ["MW_rv", "sed_val_knots", "n_knots"]


def _galaxy_rows(path: str, cat: SkyCatalog, visit: Visit, radius_deg: float, counts: SkyCatalogCounts):
    if not cat.tophat_lo_nm:
        raise CatalogError(cat.path, 0, "galaxies need the tophat SED bins (SED_models: tophat: bins)",
                           fix="add the bins to the YAML")
    if not any(k == "H0" for k, _ in cat.cosmology) or not any(k == "Om0" for k, _ in cat.cosmology):
        raise CatalogError(cat.path, 0, "galaxies need the Cosmology (H0, Om0) of their tophat SEDs",
                           fix="add the catalog's Cosmology to the YAML")
    data, rows = _read_near(path, _GALAXY_COLUMNS, _GALAXY_OPTIONAL, visit, radius_deg, cat.path)
    nbins = len(cat.tophat_lo_nm)
    z_hubble = np.asarray(data["redshift_hubble"], dtype=float)
    out = []
    for k, row in enumerate(rows):
        counts.n_galaxies += 1
        g = {name: values[k] for name, values in data.items()}
        rv = g.get("MW_rv") if g.get("MW_rv") is not None else cat.mw_rv
        where = f"{path} row {row}"
        for comp in _COMPONENTS:
            if comp == "knots" and (g.get("sed_val_knots") is None or g.get("n_knots") is None):
                continue  # knots are optional
            axes = "disk" if comp == "knots" else comp
            values = g[f"sed_val_{comp}"]
            major, minor = g[f"size_{axes}_true"], g[f"size_minor_{axes}_true"]
            third = g["n_knots"] if comp == "knots" else g[f"sersic_{comp}"]
            numbers = (g["ra"], g["dec"], g["redshift_hubble"], g["redshift"], g["shear_1"], g["shear_2"], g["convergence"],
                       major, minor, g["position_angle_unlensed"], third, g["MW_av"], rv)
            if not _finite(*numbers) or values is None or not _finite(*values):
                counts.skipped["inf/nan"] += 1
                continue
            if len(values) != nbins:
                raise CatalogError(where, 0, f"sed_val_{comp} has {len(values)} values, the YAML {nbins} tophat bins",
                                   fix="use the YAML the catalog was written with")
            if max(values) < np.finfo(float).resolution:  # skyCatalogs: no SED, nothing drawn
                counts.skipped["zero SED"] += 1
                continue
            magnorm = float(tophat_magnorm(cat, np.asarray([values], dtype=float), z_hubble[k:k + 1])[0])
            if not math.isfinite(magnorm):
                counts.skipped["no flux at 500 nm"] += 1
                continue
            if magnorm >= _MAGNORM_MAX:
                counts.skipped["magnorm>=50"] += 1
                continue
            if major < minor:
                counts.skipped["a<b"] += 1
                continue
            if comp == "knots":
                npoints = int(round(third))
                if npoints <= 0:
                    counts.skipped["knots npoints<=0"] += 1
                    continue
                obj_type, sersic_n = "knots", 0.0
            else:
                npoints, obj_type, sersic_n = 0, "sersic2d", float(third)
            _check_object_ranges(obj_type, g["ra"], g["dec"], magnorm, g["redshift"], g["shear_1"], g["shear_2"],
                                 g["convergence"], major, minor, sersic_n, npoints, where, 0)
            sed = tophat_sed_name(cat.tophat_lo_nm, cat.tophat_width_nm, values)
            out.append((f"{g['galaxy_id']}_{comp}", g["ra"], g["dec"], magnorm, sed, g["redshift"], g["shear_1"],
                        g["shear_2"], g["convergence"], 0.0, 0.0, obj_type, float(major), float(minor),
                        float(g["position_angle_unlensed"]), sersic_n, npoints, _NONE_AV, _NONE_RV,
                        float(g["MW_av"]), float(rv), int(row), path))
    return out


def _finite(*values) -> bool:
    try:
        return all(v is not None and math.isfinite(v) for v in values)
    except TypeError:
        return False


def _batch(rows: list[tuple]) -> pa.RecordBatch:
    arrays = [pa.array(list(col), type=f.type) for col, f in zip(zip(*rows), OBJECT_SCHEMA)] if rows else [
        pa.array([], type=f.type) for f in OBJECT_SCHEMA]
    return pa.RecordBatch.from_arrays(arrays, schema=OBJECT_SCHEMA)


def read_sky_catalog(path: str | os.PathLike, visit: Visit, objects_out: str | os.PathLike | None = None,
                     sky_catalog_root: str | os.PathLike | None = None,
                     radius_deg: float = DEFAULT_RADIUS_DEG) -> tuple[SkyCatalogCounts, pa.Table | None]:
    """The stars and galaxies of a skyCatalogs catalog within ``radius_deg`` of the visit's boresight.

    Parameters:
        path:              the skyCatalogs YAML.
        visit:             the visit (its ``ra_deg``, ``dec_deg``).
        objects_out:       where to write the object table (Parquet, :data:`~dc2flow.catalog.OBJECT_SCHEMA`),
                           atomically; None to return it instead [default: None].
        sky_catalog_root:  replaces the YAML's ``skycatalog_root`` [default: None].
        radius_deg:        the selection radius, degrees (> 0) [default: `DEFAULT_RADIUS_DEG`].

    Returns:
        ``(counts, table)``: the :class:`SkyCatalogCounts` (``files`` lists the YAML, then every
        file read) and the table (None when written to ``objects_out``).

    Raises:
        CatalogError: the YAML or a file is missing or malformed, or a value is out of range.
    """
    if not (isinstance(radius_deg, (int, float)) and 0 < radius_deg <= 180):
        from .errors import ConfigError

        raise ConfigError("sky_catalog_radius_deg", radius_deg, "must be in (0, 180] degrees", "(0, 180]")
    cat = load_sky_catalog(path, sky_catalog_root)
    counts = SkyCatalogCounts(files=[cat.path], missing=[summary for summary, _ in cat.missing])
    batches = []
    for f in cat.star_files:
        batches.append(_batch(_star_rows(f, cat, visit, radius_deg, counts)))
        counts.files.append(f)
    for f in cat.galaxy_files:
        batches.append(_batch(_galaxy_rows(f, cat, visit, radius_deg, counts)))
        counts.files.append(f)
    counts.n_rows = sum(b.num_rows for b in batches)
    table = pa.Table.from_batches(batches, schema=OBJECT_SCHEMA)
    logger.info("%s: %s", cat.path, counts.summary())
    if objects_out is None:
        return counts, table
    with atomic_output(objects_out) as tmp:
        pq.write_table(table, tmp)
    return counts, None
