"""Render one sensor: GalSim objects, PSF, sky and Poisson noise into an imSim-style eimage.

Drawing, in this order (each step deterministic, so identical inputs give identical pixels):

1. objects brighter than ``render.fft_flux_threshold`` photons: drawn noiselessly by FFT
   (GalSim ``method='auto'``), in ``obj_index`` order;
2. the sky level is added and Poisson noise applied to (sky + those objects), in blocks of rows
   with numpy's PCG64 seeded from the sensor's seed (so no float64 copy of the whole image);
3. fainter objects: photon-shot (GalSim ``method='phot'``), whose photons carry their own Poisson
   noise, each with a seed derived from the visit seed and the object's ``obj_index`` (the same on
   every sensor the object touches).

Seeds and snaps: the noise seed of a sensor (:func:`sensor_seed`) and the photon seeds of the
objects (:func:`object_seed`, ``photons``) include the snap for snaps >= 1, so the two snaps of a
visit get independent Poisson and photon noise, as two exposures do; the knots seed (the random
positions of a galaxy's star-forming knots, ``knots``) does not, since both snaps see the same
galaxy.  Snap 0's seeds are those of the one-snap pipeline (the snap is left out), so its pixels
are bit-identical to those made before snaps had seeds of their own (a snap 1 rendered alone then
had snap 0's noise; it now has its own).  This departs from imSim:
its ``OpsimDataLoader`` (``imsim/opsim_data.py``) seeds every snap of a visit with the
``observationId`` alone ("TODO: Figure out how to make this depend on the snap as well as the
visit"), which gives both snaps the same noise realisation; two exposures must not share theirs.
The atmosphere's phase screens (:func:`dc2flow.atmpsf.atmosphere_seed`) stay the visit's: one
atmosphere over the visit, as in imSim.

Shapes follow imSim: a Sersic of half-light radius sqrt(a b), axis ratio b/a and position angle
``beta = 90 - pa`` degrees; knots are GalSim ``RandomKnots``; lensing uses reduced shear
``g1 = gamma1 / (1 - kappa)``, ``g2 = -gamma2 / (1 - kappa)`` (imSim's ``flip_g2``) and
magnification ``1 / ((1 - kappa)^2 - gamma^2)``.  Objects sit where the sensor's header WCS (imSim's
ray-traced TAN-SIP, :mod:`dc2flow.wcs`, read from the partition's ``wcs.json``) puts them, and each
shape is mapped to pixels with that WCS's local Jacobian at the object's own position.

The PSF (``scene.psf_model``): ``parametric``, one :class:`dc2flow.psf.PsfModel` per sensor; or
``atmospheric``, the visit's phase screens (:mod:`dc2flow.atmpsf`: memory-mapped from the files the
visit's ``build_screens`` job wrote, shared by the bundle's renders, or built in process) evaluated
at each object's field angle (gnomonic offset of its RA/Dec from the boresight) for the photon-shot
objects, and imSim's round FFT stand-in (von Karman x Airy x the same Gaussian) for the FFT ones.

Very bright stars are bounded by the partition's stamp-radius cap (``max_stamp_radius_px``) and
GalSim's ``maximum_fft_size``; light beyond the stamp is not drawn.

The image is float32 electrons (an imSim "eimage"); a truth table lists every object drawn with
its catalog position, pixel position, expected and realised photons on this sensor.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from . import __version__, atmpsf, camera, wcs
from .catalog import Visit
from .errors import RenderError
from .io import atomic_output, derive_seed
from .partition import MAX_FFT_SIZE, WCS_FILE, VisitConditions, build_object, read_partition_table

log = logging.getLogger(__name__)

NOISE_BLOCK_ROWS = 64
TRUTH_COLUMNS = ("id", "obj_index", "obj_type", "ra_deg", "dec_deg", "x", "y", "flux", "flux_drawn", "method")


@dataclass(frozen=True)
class Provenance:
    """What made an image, for its header.

    Parameters:
        catalog_files:  (path, sha256) of the catalog and every file it includes.
        config_hash:    :func:`dc2flow.config.options_hash` of the physics options.
        container_image: image reference, or "".
    """

    catalog_files: tuple[tuple[str, str], ...] = ()
    config_hash: str = ""
    container_image: str = ""


def _snap_parts(visit: Visit) -> tuple:
    """What a snap adds to a seed: nothing for snap 0 (the seeds of the one-snap pipeline), else the snap."""
    return () if visit.snap == 0 else ("snap", int(visit.snap))


def sensor_seed(visit: Visit, det_num: int) -> int:
    """The noise seed of one sensor of one exposure (from the catalog's seed; the snap included
    for snaps >= 1, see the module docstring)."""
    return derive_seed("sensor", visit.seed, visit.visit, det_num, *_snap_parts(visit))


def object_seed(visit: Visit, obj_index: int, purpose: str) -> int:
    """The seed of one object's randomness (``purpose``: knots or photons), the same on every
    sensor it touches; each purpose has its own stream.  ``photons`` differs per snap (snaps >= 1
    include the snap), ``knots`` does not: the same galaxy in every snap."""
    extra = _snap_parts(visit) if purpose != "knots" else ()
    return derive_seed(purpose, visit.seed, visit.visit, obj_index, *extra)


_SHAPE_COLUMNS = ("obj_type", "flux", "major_arcsec", "minor_arcsec", "pa_deg", "sersic_n", "npoints",
                  "gamma1", "gamma2", "kappa")
_READ_COLUMNS = sorted({*_SHAPE_COLUMNS, *TRUTH_COLUMNS[:-2], "stamp_radius_px", "sed_fallback"})


def render_sensor(visit: Visit, partition_path: str | os.PathLike, det_name: str, options: dict,
                  image_out: str | os.PathLike, truth_out: str | os.PathLike,
                  provenance: Provenance = Provenance(), wcs_path: str | os.PathLike | None = None,
                  screens_path: str | os.PathLike | None = None) -> dict:
    """Render one sensor of one visit to ``image_out`` (FITS) and ``truth_out`` (TSV, gzip).

    Parameters:
        visit:          the visit's header record.
        partition_path: the sensor's partition (from :func:`dc2flow.partition.partition_visit`).
        det_name:       the sensor, e.g. ``R22_S11``.
        options:        physics options (sections scene, partition, render).
        image_out:      output FITS path.
        truth_out:      output truth-table path (``.txt.gz``).
        provenance:     recorded in the header.
        wcs_path:       the visit's sensor WCS cards [default: None, ``wcs.json`` beside the partition].
        screens_path:   with ``scene.psf_model: atmospheric``, the visit's ``screens.json``
                        (:func:`dc2flow.atmpsf.write_screens`), memory-mapped [default: None, the
                        screens are built in this process; the pixels are the same].

    Returns:
        a summary: objects drawn by each method, SED fallbacks, sky level.
    """
    import galsim

    # with the summary line at the end, the render's own measured start and end (tests/test_slurm.py
    # checks from them that a bundle's members render side by side)
    log.info("%s %s: started", visit.visit, det_name)
    sensor = camera.camera_for(options).sensor(det_name)
    if wcs_path is None:
        wcs_path = os.path.join(os.path.dirname(os.fspath(partition_path)), WCS_FILE)
    stored = wcs.read_visit_cards(wcs_path)["sensors"]
    if det_name not in stored:
        raise RenderError(wcs_path, f"no WCS for {det_name}", "rerun the partition step with this sensor")
    wcs_cards = stored[det_name]
    table = read_partition_table(partition_path, _READ_COLUMNS)
    cols = {name: _column(table, name) for name in _READ_COLUMNS}
    n = len(table)
    conditions = VisitConditions.from_visit(visit, options["scene"])
    render = options["render"]
    gsparams = galsim.GSParams(maximum_fft_size=MAX_FFT_SIZE)
    psf = conditions.psf.galsim(gsparams)
    atm = None                      # scene.psf_model atmospheric: the visit's phase screens (dc2flow.atmpsf)
    if options["scene"].get("psf_model", "parametric") == "atmospheric":
        atm = atmpsf.for_visit(visit, options["scene"], conditions.fwhm_geom_arcsec, gsparams, screens_path)
        field_u, field_v = atmpsf.field_angles_arcsec(cols["ra_deg"], cols["dec_deg"], visit.ra_deg, visit.dec_deg)

    sip = wcs.gsfits_from_cards(wcs_cards)
    # each object's shape goes through the WCS's local Jacobian at its own position
    jac = wcs.local_jacobians(sip, cols["x"], cols["y"]) if n else np.zeros((0, 4))
    pixels = np.zeros((sensor.ny, sensor.nx), dtype=np.float32)
    image = galsim.ImageF(pixels, xmin=1, ymin=1)

    bright = cols["flux"] > render["fft_flux_threshold"]
    drawn = np.zeros(n)
    touched = np.zeros(n, dtype=bool)   # its stamp overlaps the sensor and it was drawn
    shape = [cols[c] for c in _SHAPE_COLUMNS]

    def draw(rows, method):
        for i in rows:
            r, x, y = int(cols["stamp_radius_px"][i]), float(cols["x"][i]), float(cols["y"][i])
            ix, iy = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
            bounds = galsim.BoundsI(ix - r, ix + r, iy - r, iy + r) & image.bounds
            if not bounds.isDefined():
                continue
            obj_index = int(cols["obj_index"][i])
            knots_seed = object_seed(visit, obj_index, "knots") if cols["obj_type"][i] == "knots" else 0
            obj_psf = psf if atm is None else atm.psf(field_u[i], field_v[i]) if method == "phot" else atm.fft_psf
            prof = build_object(*(c[i] for c in shape), obj_psf, knots_seed, gsparams)
            stamp = image[bounds]
            stamp.wcs = galsim.JacobianWCS(*jac[i])
            kwargs = dict(image=stamp, add_to_image=True, center=galsim.PositionD(x, y))
            if method == "phot":
                kwargs["rng"] = galsim.BaseDeviate(object_seed(visit, obj_index, "photons"))
            drawn[i] = prof.drawImage(method=method, **kwargs).added_flux
            touched[i] = True

    draw(np.flatnonzero(bright), "auto")
    pixels += np.float32(conditions.sky_e_per_px)
    if render["noise"]:
        _poisson_in_place(pixels, sensor_seed(visit, sensor.det_num))
    draw(np.flatnonzero(~bright), "phot")

    on_sensor = touched
    summary = {"n_objects": n, "n_drawn": int(on_sensor.sum()), "n_fft": int((bright & on_sensor).sum()),
               "n_phot": int((~bright & on_sensor).sum()),
               "n_sed_fallback": int(cols["sed_fallback"][on_sensor].sum()),
               "sky_e_per_px": conditions.sky_e_per_px, "psf_fwhm_arcsec": conditions.psf.fwhm_arcsec,
               "psf_atm_fwhm_arcsec": conditions.psf.atm_fwhm_arcsec,
               "psf_optics_fwhm_arcsec": conditions.psf.optics_fwhm_arcsec,
               "fwhm_geom_arcsec": conditions.fwhm_geom_arcsec,
               "psf_model": "parametric" if atm is None else "atmospheric",
               "seed": sensor_seed(visit, sensor.det_num)}
    truth = {name: cols[name][on_sensor] for name in TRUTH_COLUMNS[:-2]}
    truth["flux_drawn"] = drawn[on_sensor]
    truth["method"] = np.where(bright, "fft", "phot")[on_sensor]
    write_truth(truth_out, truth)
    # the image last: its existence marks a finished sensor
    write_fits(image_out, pixels, fits_header(visit, sensor, provenance, summary, wcs_cards))
    log.info("%s %s: %s", visit.visit, det_name, summary)
    return summary


_NUMPY_DTYPES = {"double": np.dtype(np.float64), "int32": np.dtype(np.int32), "int64": np.dtype(np.int64)}


def _column(table, name: str) -> np.ndarray:
    """One column of a pyarrow Table as numpy (the values and dtype of ``to_numpy(zero_copy_only=False)``).

    Why not ``to_numpy``: pyarrow imports pandas for it, which costs a render job ~0.2 s and ~40 MB
    of its peak memory and is needed for nothing else.  Numbers without nulls are read in place
    (read-only), booleans and strings through Python lists (a few ms for ~30,000 rows).
    """
    arr = table[name].combine_chunks()
    dtype = _NUMPY_DTYPES.get(str(arr.type))
    if arr.null_count:
        return arr.to_numpy(zero_copy_only=False)
    if dtype is not None:
        if len(arr) == 0:
            return np.empty(0, dtype)
        return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)
    return np.array(arr.to_pylist(), dtype=bool if str(arr.type) == "bool" else object)


def _poisson_in_place(pixels: np.ndarray, seed: int) -> None:
    """Replace each pixel by a Poisson draw of its value, block by block (no full float64 copy)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    np.maximum(pixels, 0.0, out=pixels)
    for start in range(0, pixels.shape[0], NOISE_BLOCK_ROWS):
        block = pixels[start:start + NOISE_BLOCK_ROWS]
        block[...] = rng.poisson(block)


def fits_header(visit: Visit, sensor: camera.Sensor, provenance: Provenance, summary: dict, wcs_cards: dict):
    """The eimage header: imSim's keywords where they apply, the WCS (TAN-SIP cards of
    :mod:`dc2flow.wcs`, in DM pixel coordinates as imSim writes them), and provenance."""
    import galsim
    from astropy.io import fits

    h = fits.Header()
    cards = [
        ("EXPTIME", visit.exptime_s, "[s] exposure time"),
        ("DARKTIME", visit.exptime_s, "[s] dark time"),
        ("DET_NAME", sensor.det_name, "detector name"),
        ("DET_NUM", sensor.det_num, "detector number (LSSTCam order)"),
        ("RAFTBAY", sensor.raft, ""), ("CCDSLOT", sensor.det_name[4:], ""),
        ("CCD_MANU", sensor.vendor, "sensor vendor"),
        ("OBSID", visit.visit, "visit (obshistid)"),
        ("SEQNUM", visit.seqnum, ""),
        ("SNAP", visit.snap, "snap of the visit, 0-based (as in the image name)"),
        ("IMGTYPE", "SKYEXP", ""),
        ("CAMERA", "LSSTCam", ""),
        ("MJD-OBS", _start_mjd(visit), "[d] start of exposure (TAI)"),
        ("MJD", visit.mjd, "[d] middle of exposure (TAI): the WCS's time"),
        ("FILTER", visit.band, "band"),
        ("RATEL", visit.ra_deg, "[deg] boresight RA"),
        ("DECTEL", visit.dec_deg, "[deg] boresight Dec"),
        ("ROTANGLE", visit.rotskypos_deg, "[deg] rotSkyPos"),
        ("ROTTELPOS", visit.rottelpos_deg, "[deg] rotTelPos: the camera rotation of the WCS"),
        ("ALTITUDE", visit.altitude_deg, "[deg]"),
        ("AZIMUTH", visit.azimuth_deg, "[deg]"),
        ("AIRMASS", visit.airmass, "1/sin(altitude)"),
        ("AMSTART", visit.airmass, ""),
        ("SEEING", visit.seeing_arcsec, "[arcsec] catalog seeing (500 nm, zenith)"),
        ("PSF_FWHM", summary["psf_fwhm_arcsec"], "[arcsec] model PSF FWHM (true FWHM = FWHMgeom)"),
        ("PSF_ATM", summary["psf_atm_fwhm_arcsec"], "[arcsec] Kolmogorov FWHM of the atmosphere"),
        ("PSF_OPT", summary["psf_optics_fwhm_arcsec"], "[arcsec] Gaussian FWHM of optics+sensor"),
        ("FWHMGEOM", summary["fwhm_geom_arcsec"], "[arcsec] the visit's FWHMgeom (OpSim/imSim)"),
        ("PSFMODEL", summary.get("psf_model", "parametric"), "parametric (PSF_ATM x PSF_OPT) or atmospheric"),
        ("SKYLEVEL", summary["sky_e_per_px"], "[e-/pixel] mean sky"),
        ("BUNIT", "electron", ""),
        ("NOBJECTS", summary["n_drawn"], "objects drawn on this sensor"),
        ("NSEDFB", summary["n_sed_fallback"], "objects drawn with a fallback SED"),
        ("SEED", summary["seed"], "noise seed of this sensor"),
        ("CATSEED", visit.seed, "seed in the instance catalog"),
        ("DC2FLOW", __version__, "dc2flow version"),
        ("GALSIM", galsim.__version__, "GalSim version"),
        ("CFGHASH", provenance.config_hash, "sha256[:16] of the physics options"),
        ("CONTAINR", provenance.container_image or "none", "container image"),
    ]
    # OpSim's sky brightness and 5-sigma depth where the visit came with them (validation reads them)
    for key, value, comment in (("SKYBRT", getattr(visit, "sky_brightness_mag", None), "[mag/arcsec2] OpSim skyBrightness"),
                                ("M5OPSIM", getattr(visit, "five_sigma_depth", None), "[mag] OpSim fiveSigmaDepth")):
        if value is not None:
            cards.append((key, value, comment))
    for key, value, comment in cards:
        h[key] = (value, comment)
    for key, value in wcs_cards.items():
        h[key] = value
    h["WCSORIG"] = ("batoid+ERFA TAN-SIP", "dc2flow.wcs; DM 0-based pixel coords (imSim)")
    for i, (path, digest) in enumerate(provenance.catalog_files):
        h[f"CATFIL{i}"] = (os.path.basename(path), "instance catalog file")
        h[f"CATSHA{i}"] = digest  # 64 hex digits: no room for a comment
    return h


def _start_mjd(visit: Visit) -> float:
    start = getattr(visit, "observation_start_mjd", None)
    return float(start) if start is not None else visit.mjd - 0.5 * visit.exptime_s / 86400.0


def write_fits(path: str | os.PathLike, pixels: np.ndarray, header) -> None:
    """Write the image with CHECKSUM/DATASUM, atomically."""
    from astropy.io import fits

    hdu = fits.PrimaryHDU(data=pixels, header=header)
    with atomic_output(path) as tmp:
        hdu.writeto(tmp, checksum=True)


def write_truth(path: str | os.PathLike, truth: dict[str, np.ndarray]) -> None:
    """The per-sensor truth table (tab-separated, gzip with a fixed mtime), atomically.

    Columns: id, obj_index, obj_type, ra_deg, dec_deg, x, y (eimage/DM pixel coordinates), flux (expected
    photons), flux_drawn (photons that landed on this sensor; with noise for photon-shot objects),
    method (fft or phot).
    """
    import gzip

    formats = {"ra_deg": "%.9f", "dec_deg": "%.9f", "x": "%.4f", "y": "%.4f", "flux": "%.3f", "flux_drawn": "%.3f"}
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
            gz.write(("\t".join(TRUTH_COLUMNS) + "\n").encode())
            columns = [[formats[c] % v for v in truth[c]] if c in formats else [str(v) for v in truth[c]]
                       for c in TRUTH_COLUMNS]
            gz.write("".join("\t".join(row) + "\n" for row in zip(*columns)).encode())
