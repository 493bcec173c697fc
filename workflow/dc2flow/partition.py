"""Partition a visit's objects by sensor: fluxes, stamp sizes, and who lands where.

One job per visit reads the parsed object table once and writes one Parquet file per requested
sensor holding the objects whose *stamp* touches that sensor, so an object near an edge is drawn
on both sensors (with the same random seed, so the two halves are the same realisation).

For every object it computes, once per visit:

- ``flux``: expected photons in this exposure (:mod:`dc2flow.photometry`);
- ``sed_fallback``: whether its SED was replaced by a fallback;
- ``stamp_radius_px``: how far its light reaches above ``stamp_threshold_sigma`` x the sky noise
  per pixel: the PSF's reach for that flux (:func:`dc2flow.psf.psf_radius_px`) added in quadrature
  to the galaxy's extent ((2 + 1.5 n) x its major half-light axis for a Sersic, 3x for knots),
  never smaller than the radius enclosing ``min_enclosed_flux`` of a point source's light nor
  than ``min_stamp_radius_px``, and at most ``max_stamp_radius_px``;
- ``x``, ``y``: its position in each sensor's pixel frame (DM's pixel coordinates, which are the
  eimage's image coordinates, imSim's convention): which sensors its stamp touches is decided by
  the exact chain of :mod:`dc2flow.wcs` (ERFA, batoid, Rubin's camera geometry), and the position
  drawn is the sensor's fitted TAN-SIP header WCS's, so image and header agree exactly.

The sensors' WCS cards go to ``wcs.json`` beside the partitions (:func:`dc2flow.wcs.write_visit_cards`),
which the render reads and writes into each header.

The partition files carry every catalog column plus ``obj_index`` (the object's row in the
visit's object table, which seeds its randomness), ``flux``, ``sed_fallback``,
``stamp_radius_px``, ``x`` and ``y``.  They are written atomically: all of them or none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from . import camera, photometry, wcs
from .catalog import OBJECT_SCHEMA, Visit
from .errors import RenderError
from .io import atomic_output
from .psf import PsfModel, airmass_ks, enclosed_radius_px, fwhm_geom, psf_radius_px

log = logging.getLogger(__name__)

PARTITION_SCHEMA = OBJECT_SCHEMA.append(pa.field("obj_index", pa.int64()))
for _name, _type in (("flux", pa.float64()), ("sed_fallback", pa.bool_()), ("stamp_radius_px", pa.int32()),
                     ("x", pa.float64()), ("y", pa.float64())):
    PARTITION_SCHEMA = PARTITION_SCHEMA.append(pa.field(_name, _type))


WCS_FILE = "wcs.json"               # the sensors' header WCS cards, beside the partitions
SERSIC_N_RANGE = (0.3, 6.2)         # what GalSim's Sersic accepts
MAX_FFT_SIZE = 8192                 # GalSim's maximum_fft_size in the render (and the estimate's FFT sizes)


def build_object(kind: str, flux: float, major: float, minor: float, pa_deg: float, sersic_n: float,
                 npoints: int, gamma1: float, gamma2: float, kappa: float, psf, rng_seed: int, gsparams):
    """The GalSim profile of one catalog object (flux set, PSF convolved); see the module docstring."""
    import galsim

    if kind == "point":
        obj = galsim.DeltaFunction(gsparams=gsparams)
    else:
        hlr = math.sqrt(major * minor)
        if kind == "sersic2d":
            n = min(max(round(sersic_n * 20.0) / 20.0, SERSIC_N_RANGE[0]), SERSIC_N_RANGE[1])
            obj = galsim.Sersic(n=n, half_light_radius=hlr, gsparams=gsparams)
        else:  # knots
            obj = galsim.RandomKnots(npoints=int(npoints), half_light_radius=hlr,
                                     rng=galsim.BaseDeviate(rng_seed), gsparams=gsparams)
        if minor < major:
            obj = obj.shear(q=minor / major, beta=(90.0 - pa_deg) * galsim.degrees)
        g1, g2 = gamma1 / (1.0 - kappa), -gamma2 / (1.0 - kappa)
        mu = 1.0 / ((1.0 - kappa) ** 2 - (gamma1**2 + gamma2**2))
        if g1 or g2 or mu != 1.0:
            obj = obj.lens(g1, g2, mu)
    return galsim.Convolve(obj.withFlux(flux), psf)



@dataclass(frozen=True)
class VisitConditions:
    """What a visit's header and the scene options imply for drawing: PSF and sky.

    The sky is OpSim's ``skyBrightness`` where the visit has one (the sky at that pointing), else
    ``scene.sky_mag`` at zenith scaled by the airmass.  ``fwhm_geom_arcsec`` is the visit's FWHMgeom: OpSim's ``seeingFwhmGeom`` where the visit has
    one, else imSim's formula of the raw seeing (:func:`dc2flow.psf.fwhm_geom`); the default PSF's
    FWHM equals it (``scene.optics_fwhm_arcsec`` null).
    """

    psf: PsfModel
    sky_e_per_px: float
    fwhm_geom_arcsec: float

    @classmethod
    def from_visit(cls, visit: Visit, scene: dict) -> "VisitConditions":
        given = getattr(visit, "seeing_fwhm_geom_arcsec", None)
        if given is None or not math.isfinite(given) or given <= 0:
            given = fwhm_geom(visit.seeing_arcsec, visit.band, airmass_ks(visit.altitude_deg))
        psf = PsfModel.for_visit(visit.seeing_arcsec, visit.band, visit.altitude_deg, scene["optics_fwhm_arcsec"],
                                 given)
        opsim_sky = getattr(visit, "sky_brightness_mag", None)
        if opsim_sky is not None and math.isfinite(opsim_sky):
            # OpSim's skyBrightness is the sky at the pointing (airmass, Moon, twilight included)
            sky = photometry.sky_electrons_per_pixel(visit.band, opsim_sky, 1.0, visit.exptime_s,
                                                     camera.PIXEL_SCALE_ARCSEC)
        else:
            sky = photometry.sky_electrons_per_pixel(visit.band, scene["sky_mag"][visit.band], visit.airmass,
                                                     visit.exptime_s, camera.PIXEL_SCALE_ARCSEC)
        return cls(psf=psf, sky_e_per_px=sky, fwhm_geom_arcsec=float(given))


def stamp_radius_px(table, flux: np.ndarray, conditions: VisitConditions, options: dict) -> np.ndarray:
    """Stamp radius (px) of each object; see the module docstring."""
    part = options["partition"]
    threshold = part["stamp_threshold_sigma"] * math.sqrt(max(conditions.sky_e_per_px, 1.0))
    r_psf = psf_radius_px(conditions.psf, flux, threshold, camera.PIXEL_SCALE_ARCSEC)
    major_px = table["major_arcsec"].to_numpy(float) / camera.PIXEL_SCALE_ARCSEC
    kind = table["obj_type"].to_numpy()
    extent = np.where(kind == "sersic2d", 2.0 + 1.5 * table["sersic_n"].to_numpy(float),
                      np.where(kind == "knots", 3.0, 0.0))
    r_min = max(part["min_stamp_radius_px"],
                enclosed_radius_px(conditions.psf, part["min_enclosed_flux"], camera.PIXEL_SCALE_ARCSEC))
    r = np.ceil(np.hypot(np.maximum(r_psf, r_min), extent * major_px))
    return np.clip(r, r_min, part["max_stamp_radius_px"]).astype(np.int32)


def partition_visit(visit: Visit, objects_path: str | os.PathLike, outputs: dict[str, str],
                    options: dict, batch_rows: int = 200_000, wcs_out: str | os.PathLike | None = None) -> dict[str, int]:
    """Write one partition file per sensor in ``outputs`` (det_name -> path).

    Parameters:
        visit:        the visit's header record.
        objects_path: the visit's object table (Parquet, :data:`dc2flow.catalog.OBJECT_SCHEMA`).
        outputs:      det_name -> output path.
        options:      physics options (sections scene, partition, render).
        batch_rows:   rows read at a time (memory bound; the result does not depend on it).
        wcs_out:      where to write the sensors' WCS cards (JSON, :func:`dc2flow.wcs.write_visit_cards`)
                      [default: None, ``wcs.json`` beside the partitions].

    Returns:
        det_name -> number of objects written.

    Raises:
        RenderError: when the object table cannot be read.
    """
    cam = camera.camera_for(options)
    sensors = [cam.sensor(name) for name in outputs]
    conditions = VisitConditions.from_visit(visit, options["scene"])
    seds = photometry.SedLibrary(options["scene"]["sed_dir"])
    try:
        source = pq.ParquetFile(objects_path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise RenderError(objects_path, f"cannot read the object table ({exc})",
                          "rerun the parse_catalog step for this visit") from None
    # the visit's ray-traced optics, and each sensor's fitted TAN-SIP: the header WCS the render writes
    visit_wcs = wcs.for_visit(visit, options)
    sips = {s.det_name: visit_wcs.sensor_wcs(s) for s in sensors}
    if wcs_out is None and outputs:
        wcs_out = os.path.join(os.path.dirname(next(iter(outputs.values()))), WCS_FILE)
    counts = {s.det_name: 0 for s in sensors}
    n_fallback = 0
    with _atomic_writers(outputs) as writers:
        start = 0
        for batch in source.iter_batches(batch_size=batch_rows):
            table = batch.to_pandas()
            n = len(table)
            table["obj_index"] = np.arange(start, start + n, dtype=np.int64)
            start += n
            flux, fallback = photometry.object_photons(table, visit.band, visit.exptime_s, seds)
            table["flux"] = flux
            table["sed_fallback"] = fallback
            n_fallback += int(fallback.sum())
            table["stamp_radius_px"] = stamp_radius_px(table, flux, conditions, options)
            ra, dec = table["ra_deg"].to_numpy(float), table["dec_deg"].to_numpy(float)
            # the exact chain (ERFA, batoid, camera geometry) says which sensors an object touches ...
            x_mm, y_mm = visit_wcs.icrf_to_focal(ra, dec)
            radius = table["stamp_radius_px"].to_numpy()
            for sensor in sensors:
                x, y = sensor.focal_plane_to_pixel(x_mm, y_mm)
                with np.errstate(invalid="ignore"):
                    hit = ((x > 0.5 - radius) & (x < sensor.nx + 0.5 + radius)
                           & (y > 0.5 - radius) & (y < sensor.ny + 0.5 + radius))
                if hit.any():
                    part = table[hit].copy()
                    # ... and the sensor's header WCS where it is drawn (image and header agree exactly)
                    part["x"], part["y"] = sips[sensor.det_name].radecToxy(ra[hit], dec[hit], units="deg")
                    writers[sensor.det_name].write_table(
                        pa.Table.from_pandas(part, schema=PARTITION_SCHEMA, preserve_index=False))
                    counts[sensor.det_name] += int(hit.sum())
        if wcs_out is not None:
            wcs.write_visit_cards(wcs_out, {d: wcs.header_cards(w) for d, w in sips.items()},
                                  {"visit": visit.visit, "band": visit.band, "mjd_tai": visit.mjd,
                                   "rottelpos_deg": visit.rottelpos_deg, "rotskypos_deg": visit.rotskypos_deg,
                                   "settings": dataclasses.asdict(visit_wcs.settings),
                                   "altitude_deg": visit_wcs.altitude_deg, "azimuth_deg": visit_wcs.azimuth_deg,
                                   "parallactic_angle_deg": math.degrees(visit_wcs.q),
                                   "wavelength_nm": visit_wcs.wavelength_nm})
    log.info("visit %d: %d objects (%d with a fallback SED) -> %d sensors, %d placements",
             visit.visit, start, n_fallback, len(sensors), sum(counts.values()))
    return counts


def write_index(path: str | os.PathLike, outputs: dict[str, str], counts: dict[str, int]) -> None:
    """The visit's partition index (TSV: det_name, n_objects, bytes, file), written last.

    The pipeline declares this file, not the 189 partitions, as the partition step's output (one
    file per render to track keeps Snakemake's planning fast); it is written after every partition
    is in place, so its presence means the visit's partitions are complete.
    """
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        fh.write("det_name\tn_objects\tbytes\tfile\n")
        for name, out in outputs.items():
            fh.write(f"{name}\t{counts[name]}\t{os.path.getsize(out)}\t{os.path.basename(out)}\n")


@contextlib.contextmanager
def _atomic_writers(outputs: dict[str, str]):
    """One Parquet writer per sensor, all renamed into place together, and only on success.

    The exit stack closes each writer before its :func:`atomic_output` renames (or, on any error,
    removes) the temporary file, including when opening a later writer fails.
    """
    with contextlib.ExitStack() as stack:
        writers = {}
        for name, path in outputs.items():
            tmp = stack.enter_context(atomic_output(path))
            writers[name] = stack.enter_context(contextlib.closing(pq.ParquetWriter(tmp, PARTITION_SCHEMA)))
        yield writers


def read_partition_table(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """A sensor's partition as a pyarrow Table sorted by ``obj_index`` (optionally some columns).

    Raises:
        RenderError: when the file cannot be read.
    """
    try:
        # ParquetFile, not pq.read_table: a partition is one file, and read_table goes through
        # pyarrow.dataset, whose import (with pandas) costs ~0.3 s and ~30 MB in every render job.
        with pq.ParquetFile(path) as source:
            table = source.read(columns=None if columns is None else sorted({*columns, "obj_index"}))
    except (OSError, pa.ArrowInvalid) as exc:
        raise RenderError(path, f"cannot read the partition ({exc})",
                          "rerun the partition_visit step for this visit") from None
    return table.take(pa.compute.sort_indices(table["obj_index"]))


def read_partition(path: str | os.PathLike):
    """A sensor's partition as a pandas DataFrame sorted by ``obj_index``."""
    return read_partition_table(path).to_pandas()
