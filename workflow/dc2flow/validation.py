"""Validate rendered sensors against their truth tables, and draw quick-look pictures of a visit.

Per sensor (:func:`validate_sensor`, cheap: ~1 s and ~250 MB for a 4k x 4k eimage), with ``sep``
(SExtractor as a library):

1. **Sky**: sep's background map (``bw`` = ``bh`` = 128 px); its global level is compared with the
   header's ``SKYLEVEL`` (the model sky, e-/pixel), then the map is subtracted.
2. **Detection**: ``sep.extract`` above ``detect_threshold_sigma`` x the global background RMS,
   then windowed positions (``sep.winpos``, SExtractor's XWIN/YWIN).
3. **Matching**: the truth table's stars (``obj_type`` point, expected flux
   ``>= star_flux_min_e``, more than :data:`EDGE_PX` from the edges) are placed with the
   image's *own header WCS* (their RA/Dec through astropy), and each is matched to its nearest
   detection within ``match_radius_arcsec`` (mutual nearest neighbours).  A wrong WCS therefore
   shows up as an astrometric residual.
4. **Bright stars**: matched stars with expected flux in ``[bright_flux_min_e, bright_flux_max_e]``
   and no other detection within :data:`ISOLATION_PX`.  On them:

   - *astrometry*: median distance between detected and WCS-predicted positions (px, and arcsec
     through the WCS's pixel scale);
   - *photometry*: aperture flux (radius 3 x the model FWHM) divided by the model PSF's encircled
     fraction in that aperture, as ``dmag = m_measured - m_true`` with ``m = -2.5 log10(electrons)``;
     the median ``dmag`` and the slope of ``dmag`` against ``m_true`` (least squares);
   - *PSF*: GalSim's adaptive moments (``galsim.hsm.FindAdaptiveMom``) of each star's stamp, as a
     Gaussian-equivalent FWHM ``2.3548 sigma``; the median over stars.

The PSF model is rebuilt from the header (``PSF_ATM`` and ``PSF_OPT``: the Kolmogorov and Gaussian
FWHMs of :mod:`dc2flow.psf`), drawn by GalSim *with* the pixel response at four sub-pixel offsets
and measured with the same adaptive moments: like is compared with like (``PSF_FWHM``, the
model's true FWHM without the pixel, is recorded as ``psf_fwhm_header_arcsec``).  Against OpSim:
the stars' true FWHM (their moments FWHM times the model's ``PSF_FWHM`` over its moments FWHM)
is compared with the visit's FWHMgeom (header ``FWHMGEOM``; flag ``psf_geom``), and the stars'
ellipticity ``|e|`` (adaptive moments) with LSST's requirement: median at most 0.04, at most 5 %
above 0.07 (flag ``psf_ellipticity``).

A check fails when its figure is outside the thresholds of the config section ``validation``;
each failure adds a short name to ``flags`` (``matches``, ``astrometry``, ``photometry``, ``psf``,
``psf_geom``, ``psf_ellipticity``, ``sky``) and the sensor's ``status`` becomes ``flagged``, logged at WARNING.  The star checks need
``min_matches`` isolated bright stars: when the truth table holds fewer (a sparse or crowded field)
they are listed in ``skipped`` instead; when it holds enough but fewer are matched, ``matches`` fails.
``n_bright_expected`` counts the truth's bright stars isolated by the same rule as ``n_bright`` (an
unmatched star at its WCS position), so the two compare like with like.  ``photometry_slope`` is
skipped when it cannot be fitted (see :func:`checks`).  The record is always
written (a JSON object, see :data:`RECORD_KEYS`), with the matched stars in a TSV beside it
(:data:`STAR_COLUMNS`).

Per visit, :func:`summarize_visit` gathers the records into one table and one figure and, when
``strict``, raises :class:`~dc2flow.errors.ValidationError` naming the flagged sensors.

Pictures: :func:`plot_visit` (a visit's checks) and :func:`plot_resources` (bundle plan and
measured vs estimated resources); the focal-plane mosaic and single-sensor cutouts are
:mod:`dc2flow.mosaic`'s, and every picture goes through :mod:`dc2flow.display`'s stretches.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from . import camera, display
from .errors import RenderError, ValidationError
from .io import IMAGE_RE, atomic_output, read_benchmark, render_benchmark_key, write_json

log = logging.getLogger(__name__)

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))   # 2.3548
BACKGROUND_MESH_PX = 128
EDGE_PX = 40                   # stars closer than this to an edge are not used (truncated stamps)
ISOLATION_PX = 25              # a bright star has no other detection this close
STAMP_HALF_PX = 15             # half size of the stamps the PSF is measured on
APERTURE_FWHM = 3.0            # photometric aperture radius, in model FWHMs
MODEL_OFFSETS = ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5))   # sub-pixel centres of the model PSF
CHECKS = ("matches", "astrometry", "photometry", "psf", "psf_geom", "psf_ellipticity", "sky", "sky_opsim")
PSF_E_HIGH = 0.07              # LSST's PSF ellipticity requirement: at most psf_e_frac_max of stars above this
RECORD_KEYS = ("visit", "snap", "det_name", "band", "status", "flags", "skipped", "n_truth", "n_detected", "n_matched",
               "n_bright", "n_bright_expected",
               "astrometry_median_px", "astrometry_median_arcsec", "photometry_slope", "photometry_median_dmag",
               "psf_fwhm_arcsec", "psf_fwhm_model_arcsec", "psf_fwhm_header_arcsec", "psf_fwhm_true_arcsec",
               "psf_fwhm_geom_arcsec", "psf_e_median", "psf_e_frac_high", "sky_e_per_px",
               "sky_model_e_per_px", "sky_mag_measured", "sky_mag_opsim", "m5_measured", "m5_opsim",
               "thresholds", "image")
STAR_COLUMNS = ("id", "x_true", "y_true", "x", "y", "dx_px", "dy_px", "mag_true", "dmag", "fwhm_arcsec", "bright")
SUMMARY_COLUMNS = ("visit", "snap", "det_name", "band", "status", "flags", "skipped", "n_truth", "n_detected", "n_matched",
                   "n_bright",
                   "astrometry_median_px", "astrometry_median_arcsec", "photometry_slope", "photometry_median_dmag",
                   "psf_fwhm_arcsec", "psf_fwhm_model_arcsec", "psf_fwhm_true_arcsec", "psf_fwhm_geom_arcsec",
                   "psf_e_median", "psf_e_frac_high", "sky_e_per_px", "sky_model_e_per_px", "sky_mag_measured",
                   "sky_mag_opsim", "m5_measured", "m5_opsim")


@dataclass(frozen=True)
class Thresholds:
    """What a sensor must meet, and how stars are chosen: the config section ``validation``.

    The defaults are those of ``config/config.yaml`` (:meth:`defaults`); each field is the key of
    the same name (see ``config/README.md``).

    Parameters:
        detect_threshold_sigma: detection threshold, in background RMS. [default: 5.0]
        match_radius_arcsec:    largest truth-detection distance of a match. [default: 1.0]
        star_flux_min_e:        faintest truth star (expected electrons) expected to be detected. [default: 5000]
        bright_flux_min_e:      faintest and
        bright_flux_max_e:      brightest star (expected electrons) used for astrometry, photometry and PSF.
                                [default: 20000, 5e6]
        min_matches:            fewest bright stars for the checks to mean something. [default: 5]
        astrometry_max_px:      largest median astrometric residual, pixels. [default: 0.1]
        photometry_max_slope:   largest |slope| of dmag against magnitude (bright stars). [default: 0.02]
        photometry_max_dmag:    largest |median dmag| of bright stars, mag. [default: 0.05]
        psf_fwhm_rtol:          largest |measured / model - 1| of the PSF FWHM. [default: 0.05]
        psf_fwhm_geom_rtol:     largest |measured true FWHM / the visit's FWHMgeom - 1|. [default: 0.05]
        psf_e_median_max:       largest median PSF ellipticity |e| of bright stars. [default: 0.04]
        psf_e_frac_max:         largest fraction of bright stars with |e| > 0.07. [default: 0.05]
        sky_rtol:               largest |measured / model - 1| of the sky level. [default: 0.02]
        sky_opsim_rtol:         largest |measured / OpSim's skyBrightness - 1| of the sky flux. [default: 0.05]
    """

    detect_threshold_sigma: float
    match_radius_arcsec: float
    star_flux_min_e: float
    bright_flux_min_e: float
    bright_flux_max_e: float
    min_matches: int
    astrometry_max_px: float
    photometry_max_slope: float
    photometry_max_dmag: float
    psf_fwhm_rtol: float
    psf_fwhm_geom_rtol: float
    psf_e_median_max: float
    psf_e_frac_max: float
    sky_rtol: float
    sky_opsim_rtol: float

    @classmethod
    def from_config(cls, section: dict) -> "Thresholds":
        """The thresholds of a config ``validation`` section (other keys, e.g. ``strict``, ignored)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in section.items() if k in names})

    @classmethod
    def defaults(cls) -> "Thresholds":
        """The thresholds of ``config/config.yaml``."""
        from .config import load

        return cls.from_config(load()["validation"])

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# --- per sensor -----------------------------------------------------------------------------------

def read_truth(path: str | os.PathLike):
    """The truth table written by :func:`dc2flow.render.write_truth` (a pandas DataFrame)."""
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t", dtype={"id": str})
    except (OSError, ValueError) as exc:
        raise RenderError(str(path), f"cannot read the truth table ({exc})", "rerun the render_sensor job") from None


def model_psf(header) -> tuple[object, float]:
    """The visit's PSF model rebuilt from an eimage header (``PSF_ATM``, ``PSF_OPT``: the
    Kolmogorov and Gaussian FWHMs of :class:`dc2flow.psf.PsfModel`), and its header FWHM (arcsec)."""
    from .psf import PsfModel

    return (PsfModel(atm_fwhm_arcsec=float(header["PSF_ATM"]), optics_fwhm_arcsec=float(header["PSF_OPT"])),
            float(header["PSF_FWHM"]))


def _against_opsim(header, sky_e_per_px: float, fwhm_true_arcsec: float | None, pixel_scale: float) -> dict:
    """The measured sky as a surface brightness and the 5-sigma depth it allows, beside OpSim's
    ``skyBrightness`` and ``fiveSigmaDepth`` (header ``SKYBRT``, ``M5OPSIM``; None where the visit
    came without them, e.g. an instance catalog).  The depth uses the stars' true FWHM converted to
    OpSim's FWHMeff (``FWHMgeom = 0.822 FWHMeff + 0.052``), the measured sky, the band's AB zero
    point and collecting area (:func:`dc2flow.photometry.five_sigma_depth`)."""
    from .photometry import five_sigma_depth, sky_brightness_mag

    band, exptime = str(header["FILTER"]), float(header["EXPTIME"])

    def given(key):
        value = header.get(key)
        return float(value) if value is not None and math.isfinite(float(value)) else None

    out = {"sky_mag_measured": None, "sky_mag_opsim": given("SKYBRT"), "m5_measured": None, "m5_opsim": given("M5OPSIM")}
    if sky_e_per_px is not None and sky_e_per_px > 0 and exptime > 0:
        out["sky_mag_measured"] = _round(sky_brightness_mag(band, sky_e_per_px, exptime, pixel_scale), 4)
        if fwhm_true_arcsec:
            fwhm_eff = (fwhm_true_arcsec - 0.052) / 0.822
            out["m5_measured"] = _round(five_sigma_depth(band, sky_e_per_px, fwhm_eff, exptime, pixel_scale), 4)
    return out


def _moments(stamp: np.ndarray) -> tuple[float, float]:
    """(Gaussian-equivalent FWHM in px, ellipticity |e| = (a^2 - b^2) / (a^2 + b^2)) from GalSim's
    adaptive moments; NaN, NaN if they fail."""
    import galsim

    try:
        mom = galsim.hsm.FindAdaptiveMom(galsim.Image(np.ascontiguousarray(stamp, dtype=np.float64)), strict=True)
    except galsim.errors.GalSimHSMError:
        return float("nan"), float("nan")
    return float(mom.moments_sigma) * FWHM_PER_SIGMA, float(mom.observed_shape.e)


def _moments_fwhm_px(stamp: np.ndarray) -> float:
    """Gaussian-equivalent FWHM (px) from GalSim's adaptive moments; NaN if they fail."""
    return _moments(stamp)[0]


def model_psf_figures(psf, pixel_scale_arcsec: float) -> tuple[float, float]:
    """(adaptive-moment FWHM in arcsec, aperture radius in px) of the model PSF with the pixel.

    Also returns the aperture: :data:`APERTURE_FWHM` model FWHMs.
    """

    size = 2 * STAMP_HALF_PX + 1
    fwhm = []
    for dx, dy in MODEL_OFFSETS:
        img = psf.galsim().drawImage(nx=size, ny=size, scale=pixel_scale_arcsec, offset=(dx, dy))
        fwhm.append(_moments_fwhm_px(img.array))
    fwhm_px = float(np.median(fwhm))
    return fwhm_px * pixel_scale_arcsec, APERTURE_FWHM * fwhm_px


def aperture_fraction(psf, pixel_scale_arcsec: float, radius_px: float) -> float:
    """Fraction of a star's light (model PSF with the pixel) inside a circle of ``radius_px``."""
    import sep

    half = int(math.ceil(8 * radius_px))
    img = psf.galsim().drawImage(nx=2 * half + 1, ny=2 * half + 1, scale=pixel_scale_arcsec).array
    inside, _, _ = sep.sum_circle(np.ascontiguousarray(img, dtype=np.float64), [float(half)], [float(half)],
                                  radius_px, subpix=5)
    return float(inside[0]) / float(img.sum())


def _match(xt: np.ndarray, yt: np.ndarray, xd: np.ndarray, yd: np.ndarray, radius: float) -> np.ndarray:
    """For each truth position, the index of its mutual-nearest detection within ``radius``, else -1."""
    from scipy.spatial import cKDTree

    out = np.full(len(xt), -1, dtype=int)
    if len(xt) == 0 or len(xd) == 0:
        return out
    d_t, i_t = cKDTree(np.column_stack([xd, yd])).query(np.column_stack([xt, yt]))
    _, i_d = cKDTree(np.column_stack([xt, yt])).query(np.column_stack([xd, yd]))
    for k in range(len(xt)):
        if d_t[k] <= radius and i_d[i_t[k]] == k:
            out[k] = i_t[k]
    return out


def _median(values) -> float | None:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def _round(value, digits: int = 6):
    return None if value is None or not np.isfinite(value) else float(round(float(value), digits))


def measure_sensor(image: str | os.PathLike, truth: str | os.PathLike, thresholds: Thresholds) -> tuple[dict, dict]:
    """Measure one rendered sensor against its truth table (see the module docstring).

    Parameters:
        image:       the eimage (FITS).
        truth:       its truth table (``centroid_...txt.gz``).
        thresholds:  star selection and the limits checked.

    Returns:
        (record, stars): the record (keys :data:`RECORD_KEYS`) and the matched stars as columns
        (:data:`STAR_COLUMNS`).

    Raises:
        RenderError: when the image or the truth table cannot be read.
    """
    import sep
    from astropy.wcs import WCS, FITSFixedWarning
    from astropy.wcs.utils import proj_plane_pixel_scales

    pixels, header = display.read_image(image)
    table = read_truth(truth)
    with warnings.catch_warnings():   # astropy's FITSFixedWarning about DATE-OBS from MJD-OBS: harmless
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header)
    pixel_scale = float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)
    ny, nx = pixels.shape

    # sky, then detection on the background-subtracted image
    bkg = sep.Background(pixels, bw=BACKGROUND_MESH_PX, bh=BACKGROUND_MESH_PX)
    sky, rms = float(bkg.globalback), float(bkg.globalrms)
    bkg.subfrom(pixels)
    sep.set_extract_pixstack(max(300_000, pixels.size // 16))
    objects = sep.extract(pixels, thresholds.detect_threshold_sigma, err=rms, minarea=5)
    psf, header_fwhm = model_psf(header)
    model_fwhm_arcsec, aperture_px = model_psf_figures(psf, pixel_scale)
    sig = model_fwhm_arcsec / pixel_scale / FWHM_PER_SIGMA
    if len(objects):
        xd, yd, _ = sep.winpos(pixels, objects["x"], objects["y"], np.full(len(objects), sig))
    else:
        xd = yd = np.zeros(0)

    # truth stars placed by the image's own WCS (1-based -> sep's 0-based)
    stars = table[(table["obj_type"] == "point") & (table["flux"] >= thresholds.star_flux_min_e)]
    xt, yt = wcs.all_world2pix(stars["ra_deg"].to_numpy(float), stars["dec_deg"].to_numpy(float), 0)
    inside = (xt >= EDGE_PX) & (xt < nx - EDGE_PX) & (yt >= EDGE_PX) & (yt < ny - EDGE_PX)
    stars, xt, yt = stars[inside], xt[inside], yt[inside]
    flux_all = stars["flux"].to_numpy(float)
    bright_all = (flux_all >= thresholds.bright_flux_min_e) & (flux_all <= thresholds.bright_flux_max_e)
    match = _match(xt, yt, xd, yd, thresholds.match_radius_arcsec / pixel_scale)
    ok = match >= 0
    xt_all, yt_all = xt, yt
    stars, xt, yt, idx = stars[ok], xt[ok], yt[ok], match[ok]
    flux_true = stars["flux"].to_numpy(float)
    xm, ym = xd[idx], yd[idx]

    # isolation: no other detection within ISOLATION_PX
    isolated = isolated_stars(xm, ym, xd, yd)
    bright = (flux_true >= thresholds.bright_flux_min_e) & (flux_true <= thresholds.bright_flux_max_e) & isolated
    # the bright stars one could match, isolated by the same rule (like with like): a matched star as
    # above, an unmatched one when at most one detection lies within ISOLATION_PX of its WCS position
    isolated_all = isolated_stars(xt_all, yt_all, xd, yd)
    isolated_all[ok] = isolated
    n_bright_expected = int((bright_all & isolated_all).sum())

    # photometry and PSF size of every matched star (bright ones drive the checks)
    apcorr = aperture_fraction(psf, pixel_scale, aperture_px)
    flux_ap = sep.sum_circle(pixels, xm, ym, aperture_px, subpix=5)[0] if len(idx) else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag_true = -2.5 * np.log10(flux_true)
        dmag = -2.5 * np.log10(flux_ap / apcorr) - mag_true
    fwhm = np.full(len(idx), np.nan)
    ell = np.full(len(idx), np.nan)
    for k in np.flatnonzero(bright):
        cx, cy = int(round(xm[k])), int(round(ym[k]))
        stamp = pixels[cy - STAMP_HALF_PX:cy + STAMP_HALF_PX + 1, cx - STAMP_HALF_PX:cx + STAMP_HALF_PX + 1]
        fwhm_px, ell[k] = _moments(stamp)
        fwhm[k] = fwhm_px * pixel_scale
    # the stars' true FWHM: their moments FWHM times the model's true-over-moments ratio (the model
    # drawn with the pixel and measured the same way), against the visit's FWHMgeom
    fwhm_median = _median(fwhm[bright])
    fwhm_true = fwhm_median * header_fwhm / model_fwhm_arcsec if fwhm_median is not None else None
    fwhm_geom = float(header["FWHMGEOM"]) if "FWHMGEOM" in header else None
    ell_bright = ell[bright & np.isfinite(ell)]

    dx, dy = xm - xt, ym - yt
    resid = np.hypot(dx, dy)
    astro_px = _median(resid[bright])
    slope = None
    good = bright & np.isfinite(dmag)
    if good.sum() >= 3 and np.ptp(mag_true[good]) > 0.5:
        slope = float(np.polyfit(mag_true[good], dmag[good], 1)[0])

    record = {
        "visit": int(header.get("OBSID", -1)), "snap": _image_snap(image, header),
        "det_name": str(header.get("DET_NAME", "")),
        "band": str(header.get("FILTER", "")), "image": os.path.basename(str(image)),
        "n_truth": int(inside.sum()), "n_detected": int(len(objects)), "n_matched": int(ok.sum()),
        "n_bright": int(bright.sum()), "n_bright_expected": n_bright_expected,
        "astrometry_median_px": _round(astro_px),
        "astrometry_median_arcsec": _round(astro_px * pixel_scale if astro_px is not None else None),
        "photometry_slope": _round(slope), "photometry_median_dmag": _round(_median(dmag[good])),
        "psf_fwhm_arcsec": _round(_median(fwhm[bright])), "psf_fwhm_model_arcsec": _round(model_fwhm_arcsec),
        "psf_fwhm_header_arcsec": _round(header_fwhm), "psf_fwhm_true_arcsec": _round(fwhm_true),
        "psf_fwhm_geom_arcsec": _round(fwhm_geom),
        "psf_e_median": _round(float(np.median(ell_bright)) if len(ell_bright) else None),
        "psf_e_frac_high": _round(float(np.mean(ell_bright > PSF_E_HIGH)) if len(ell_bright) else None),
        "sky_e_per_px": _round(sky, 4), "sky_model_e_per_px": _round(float(header["SKYLEVEL"]), 4),
        **_against_opsim(header, sky, fwhm_true, pixel_scale),
        "thresholds": thresholds.to_dict(),
    }
    record["flags"], record["skipped"] = checks(record, thresholds)
    record["status"] = "flagged" if record["flags"] else "ok"
    star_table = {"id": stars["id"].astype(str).to_numpy(), "x_true": xt + 1.0, "y_true": yt + 1.0,
                  "x": xm + 1.0, "y": ym + 1.0, "dx_px": dx, "dy_px": dy, "mag_true": mag_true, "dmag": dmag,
                  "fwhm_arcsec": fwhm, "bright": bright.astype(int)}
    return record, star_table


def isolated_stars(x: np.ndarray, y: np.ndarray, xd: np.ndarray, yd: np.ndarray) -> np.ndarray:
    """True where at most one detection (the star's own) lies within :data:`ISOLATION_PX` of ``(x, y)``.

    The same rule counts the bright stars matched (``n_bright``, at their detected positions) and
    those one could match (``n_bright_expected``, unmatched ones at their WCS positions).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(xd) <= 1 or not len(x):
        return np.ones(len(x), dtype=bool)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(np.column_stack([xd, yd])).query(np.column_stack([x, y]), k=2)
    return dist[:, 1] > ISOLATION_PX


def checks(record: dict, t: Thresholds) -> tuple[list[str], list[str]]:
    """(failed, skipped): the names of the checks a record fails, and of those it cannot make.

    The star checks (astrometry, photometry, psf) need ``min_matches`` bright stars.  When the
    truth table itself holds fewer isolated bright stars (a sparse or crowded field), they are
    *skipped*, not failed; when it holds enough but fewer are matched (e.g. a WCS far off, an empty
    image), ``matches`` fails.  ``n_bright`` and ``n_bright_expected`` both count *isolated* bright
    stars, so crowding alone does not fail ``matches``.  The photometric slope needs 3 stars over
    more than 0.5 mag; without them it is ``None`` and ``photometry_slope`` is skipped (the median
    ``dmag`` is still checked).  Any other figure that cannot be computed although the stars are
    there fails its check.
    """
    def off(value, limit):
        return value is None or not abs(value) <= limit

    flags, skipped = [], []
    if record["n_bright_expected"] < t.min_matches:
        skipped += ["astrometry", "photometry", "psf", "psf_geom", "psf_ellipticity"]
    else:
        if record["n_bright"] < t.min_matches:
            flags.append("matches")
        if off(record["astrometry_median_px"], t.astrometry_max_px):
            flags.append("astrometry")
        if record["photometry_slope"] is None:
            skipped.append("photometry_slope")  # < 3 good stars or magnitudes spanning <= 0.5 mag
            slope_off = False
        else:
            slope_off = off(record["photometry_slope"], t.photometry_max_slope)
        if slope_off or off(record["photometry_median_dmag"], t.photometry_max_dmag):
            flags.append("photometry")
        fwhm, model = record["psf_fwhm_arcsec"], record["psf_fwhm_model_arcsec"]
        if off(None if fwhm is None or not model else fwhm / model - 1.0, t.psf_fwhm_rtol):
            flags.append("psf")
        true, geom = record.get("psf_fwhm_true_arcsec"), record.get("psf_fwhm_geom_arcsec")
        if geom is None:
            skipped.append("psf_geom")   # an eimage written before FWHMGEOM was in the header
        elif off(None if true is None else true / geom - 1.0, t.psf_fwhm_geom_rtol):
            flags.append("psf_geom")
        e_med, e_high = record.get("psf_e_median"), record.get("psf_e_frac_high")
        if off(e_med, t.psf_e_median_max) or off(e_high, t.psf_e_frac_max):
            flags.append("psf_ellipticity")
    sky, sky_model = record["sky_e_per_px"], record["sky_model_e_per_px"]
    if off(None if sky is None or not sky_model else sky / sky_model - 1.0, t.sky_rtol):
        flags.append("sky")
    measured, opsim = record.get("sky_mag_measured"), record.get("sky_mag_opsim")
    if opsim is None:
        skipped.append("sky_opsim")   # no OpSim sky brightness for this visit (an instance catalog)
    elif off(None if measured is None else 10 ** (-0.4 * (measured - opsim)) - 1.0, t.sky_opsim_rtol):
        flags.append("sky_opsim")
    return flags, skipped


def _describe(record: dict) -> str:
    t = record["thresholds"]
    parts = {"matches": f"{record['n_bright']} bright stars matched < {t['min_matches']}",
             "astrometry": f"median residual {record['astrometry_median_px']} px > {t['astrometry_max_px']}",
             "photometry": f"slope {record['photometry_slope']} (max {t['photometry_max_slope']}), median dmag "
                           f"{record['photometry_median_dmag']} (max {t['photometry_max_dmag']})",
             "psf": f"FWHM {record['psf_fwhm_arcsec']}\" vs model {record['psf_fwhm_model_arcsec']}\" "
                    f"(tolerance {100 * t['psf_fwhm_rtol']:g}%)",
             "psf_geom": f"true FWHM {record.get('psf_fwhm_true_arcsec')}\" vs the visit's FWHMgeom "
                         f"{record.get('psf_fwhm_geom_arcsec')}\" (tolerance {100 * t['psf_fwhm_geom_rtol']:g}%)",
             "psf_ellipticity": f"median |e| {record.get('psf_e_median')} (max {t['psf_e_median_max']}), "
                                f"{record.get('psf_e_frac_high')} of stars above {PSF_E_HIGH} (max {t['psf_e_frac_max']})",
             "sky_opsim": f"sky {record.get('sky_mag_measured')} vs OpSim's {record.get('sky_mag_opsim')} mag/arcsec2 "
                          f"(tolerance {100 * t['sky_opsim_rtol']:g}% in flux)",
             "sky": f"sky {record['sky_e_per_px']} vs model {record['sky_model_e_per_px']} e-/px "
                    f"(tolerance {100 * t['sky_rtol']:g}%)"}
    return "; ".join(f"{flag}: {parts[flag]}" for flag in record["flags"])


def validate_sensor(image: str | os.PathLike, truth: str | os.PathLike, out_json: str | os.PathLike,
                    thresholds: Thresholds | None = None, stars_out: str | os.PathLike | None = None) -> dict:
    """Measure one sensor, write its record (and matched stars), warn loudly if it is flagged.

    A flagged sensor is not an error here: the record is written either way (the registry reads
    it); :func:`summarize_visit` fails the run when asked to be strict.

    Parameters:
        image:       the eimage (FITS).
        truth:       its truth table.
        out_json:    the record (JSON, keys :data:`RECORD_KEYS`), written atomically.
        thresholds:  the limits. [default: None, those of ``config/config.yaml``]
        stars_out:   also write the matched stars here (TSV, :data:`STAR_COLUMNS`). [default: None]

    Returns:
        the record.
    """
    record, stars = measure_sensor(image, truth, thresholds or Thresholds.defaults())
    if stars_out is not None:
        write_table(stars_out, STAR_COLUMNS, zip(*(stars[c] for c in STAR_COLUMNS)))
    write_json(out_json, record)
    if record["flags"]:
        log.warning("VALIDATION FLAGGED visit %d %s: %s (record %s)", record["visit"], record["det_name"],
                    _describe(record), out_json)
    else:
        log.info("visit %d %s validated: %s", record["visit"], record["det_name"],
                 {k: record[k] for k in SUMMARY_COLUMNS[6:]})
    return record


def _validate_one(args: tuple) -> str:
    image, truth, out_json, stars_out, thresholds = args
    validate_sensor(image, truth, out_json, thresholds, stars_out=stars_out)
    return str(out_json)


def validate_visit(images: Sequence[str | os.PathLike], truths: Sequence[str | os.PathLike],
                   out_dir: str | os.PathLike, out_tsv: str | os.PathLike, plot: str | os.PathLike | None = None,
                   thresholds: Thresholds | None = None, strict: bool = False, jobs: int = 1) -> list[dict]:
    """Validate every sensor of one visit, then :func:`summarize_visit` them.

    One job per visit rather than one per sensor: a campaign's DAG then holds one job per sensor
    (its render), which keeps Snakemake's planning fast, and validation settings still never touch
    the renders.  Each sensor's record is ``{out_dir}/{det_name}.json`` with its matched stars in
    ``{det_name}.tsv``; the result does not depend on ``jobs``.

    Parameters:
        images, truths: the visit's eimages and their truth tables, in the same order.
        out_dir:    where the per-sensor records go.
        out_tsv, plot, strict: as for :func:`summarize_visit`.
        thresholds: the limits. [default: None, those of ``config/config.yaml``]
        jobs:       sensors validated side by side (processes). [default: 1]

    Raises:
        ValidationError: when ``strict`` and a sensor is flagged.
        RenderError: when the lists differ in length or an image has no DET_NAME.
    """
    if len(images) != len(truths):
        raise RenderError(str(out_dir), f"{len(images)} images but {len(truths)} truth tables",
                          "pass one truth table per image, in the same order")
    thresholds = thresholds or Thresholds.defaults()
    tasks = []
    for image, truth in zip(images, truths):
        det_name = _det_name_of(image)
        out_json = os.path.join(os.fspath(out_dir), f"{det_name}.json")
        tasks.append((os.fspath(image), os.fspath(truth), out_json, _stars_path(out_json), thresholds))
    if jobs > 1 and len(tasks) > 1:
        import concurrent.futures
        import multiprocessing

        with concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(tasks)),
                                                    mp_context=multiprocessing.get_context("fork")) as pool:
            records = list(pool.map(_validate_one, tasks))
    else:
        records = [_validate_one(t) for t in tasks]
    return summarize_visit(records, out_tsv, plot, strict=strict)


def _det_name_of(image: str | os.PathLike) -> str:
    """The sensor of an eimage, from its header (DET_NAME)."""
    from astropy.io import fits

    try:
        name = fits.getval(image, "DET_NAME")
    except (OSError, KeyError) as exc:
        raise RenderError(str(image), f"cannot read DET_NAME from the header ({exc})",
                          "pass the eimages the render jobs wrote") from None
    return str(name)


def _fmt(value) -> str:
    if value is None:
        return "nan"
    if isinstance(value, (float, np.floating)):
        return "nan" if not np.isfinite(value) else f"{float(value):.6g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    return str(value)


def write_table(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """A tab-separated table with a header line, atomically (``nan`` for missing numbers)."""
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        fh.write("\t".join(columns) + "\n")
        for row in rows:
            fh.write("\t".join(_fmt(v) for v in row) + "\n")


# --- per visit -------------------------------------------------------------------------------------

def read_record(path: str | os.PathLike) -> dict:
    """A per-sensor record written by :func:`validate_sensor` (one written before the ``snap`` key
    gets its image name's snap).

    Raises:
        RenderError: when a key of :data:`RECORD_KEYS` is missing (not a record, or an old one).
    """
    with open(path) as fh:
        record = json.load(fh)
    missing = [k for k in RECORD_KEYS if k not in record and k != "snap"]
    if missing:
        raise RenderError(str(path), f"not a validation record (missing {', '.join(missing)})",
                          "rerun the validate_visit job")
    if "snap" not in record:
        record["snap"] = _image_snap(record["image"], {})
    return record


def _image_snap(image: str | os.PathLike, header) -> int:
    """The snap of an image: from its imSim name (``eimage_{visit:08d}-{snap}-...``), else its SNAP card, else 0."""
    m = IMAGE_RE.match(os.path.basename(str(image)))
    return int(m.group(2)) if m else int(header.get("SNAP", 0))


def _stars_path(record_path: str | os.PathLike) -> str:
    return os.path.splitext(str(record_path))[0] + ".tsv"


def summarize_visit(records: Sequence[str | os.PathLike], out_tsv: str | os.PathLike,
                    plot: str | os.PathLike | None = None, strict: bool = False) -> list[dict]:
    """One visit's validation: a table of every sensor, a figure, and (strict) an error if any is flagged.

    Parameters:
        records:  the per-sensor record JSONs (from :func:`validate_sensor`); the matched-star
                  tables beside them (same name, ``.tsv``) feed the figure when present.
        out_tsv:  the table (TSV, :data:`SUMMARY_COLUMNS`, one row per sensor in detector order).
        plot:     the figure (PNG): astrometric and photometric residuals against magnitude for the
                  stars of every sensor, PSF FWHM and sky measured vs model per sensor. [default: None]
        strict:   raise when a sensor is flagged (after writing the table and figure). [default: False]

    Returns:
        the records, in detector order.

    Raises:
        ValidationError: when ``strict`` and a sensor is flagged.
    """
    recs = sorted((read_record(p) for p in records), key=lambda r: (r["visit"], r["snap"], camera.get_sensor(r["det_name"]).det_num))
    write_table(out_tsv, SUMMARY_COLUMNS, ([r[c] for c in SUMMARY_COLUMNS] for r in recs))
    if plot is not None:
        stars = {}
        for path in records:
            p = _stars_path(path)
            if os.path.exists(p):
                stars[read_record(path)["det_name"]] = _read_stars(p)
        plot_visit(recs, stars, plot)
    flagged = {r["det_name"]: r["flags"] for r in recs if r["flags"]}
    for r in recs:
        if r["flags"]:
            log.warning("VALIDATION FLAGGED visit %d %s: %s", r["visit"], r["det_name"], _describe(r))
    log.info("%d sensors, %d flagged; table %s", len(recs), len(flagged), out_tsv)
    if strict and flagged:
        raise ValidationError(recs[0]["visit"], flagged, str(out_tsv))
    return recs


def _read_stars(path: str) -> dict[str, np.ndarray]:
    import pandas as pd

    table = pd.read_csv(path, sep="\t", dtype={"id": str})
    return {c: table[c].to_numpy() for c in table.columns}


def _savefig(fig, out: str | os.PathLike) -> None:
    """Save a matplotlib figure as PNG, atomically and reproducibly (no software/time metadata)."""
    import matplotlib.pyplot as plt

    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_visit(records: list[dict], stars: dict[str, dict], out: str | os.PathLike) -> None:
    """The visit's validation figure (four panels; flagged sensors in red)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    (ax_a, ax_p), (ax_f, ax_s) = axes
    flagged = {r["det_name"] for r in records if r["flags"]}
    for det_name, s in sorted(stars.items()):
        bright = s["bright"].astype(bool)
        colour = "tab:red" if det_name in flagged else None
        kw = dict(s=8, alpha=0.7, label=det_name, color=colour)
        ax_a.scatter(s["mag_true"][bright], np.hypot(s["dx_px"], s["dy_px"])[bright], **kw)
        ax_p.scatter(s["mag_true"][bright], s["dmag"][bright], **kw)
    t = records[0]["thresholds"] if records else {}
    ax_a.axhline(t.get("astrometry_max_px", 0.1), color="k", ls="--", lw=0.8, label="median limit")
    ax_a.set(xlabel="true magnitude, -2.5 log10(electrons)", ylabel="astrometric residual (px)",
             title="Astrometry of bright stars (header WCS)")
    ax_p.axhline(0.0, color="k", lw=0.8)
    ax_p.set(xlabel="true magnitude, -2.5 log10(electrons)", ylabel="dmag = measured - true",
             title="Photometry of bright stars (aperture-corrected)")
    x = np.arange(len(records))
    names = [r["det_name"] for r in records]
    colours = ["tab:red" if n in flagged else "tab:blue" for n in names]

    def series(key):
        return np.array([np.nan if r.get(key) is None else r[key] for r in records], dtype=float)

    for ax, key, model, tol, what in ((ax_f, "psf_fwhm_arcsec", "psf_fwhm_model_arcsec", "psf_fwhm_rtol",
                                       "PSF FWHM vs model with pixel (o) and FWHMgeom (x)"),
                                      (ax_s, "sky_e_per_px", "sky_model_e_per_px", "sky_rtol",
                                       "sky level vs model (SKYLEVEL)")):
        with np.errstate(invalid="ignore", divide="ignore"):
            ax.scatter(x, 100.0 * (series(key) / series(model) - 1.0), c=colours, label="measured / model - 1")
            if ax is ax_f:   # against OpSim: the stars' true FWHM over the visit's FWHMgeom
                ax.scatter(x, 100.0 * (series("psf_fwhm_true_arcsec") / series("psf_fwhm_geom_arcsec") - 1.0),
                           c=colours, marker="x", label="true FWHM / FWHMgeom - 1")
        limit = 100.0 * t.get(tol, 0.05)
        ax.axhline(limit, color="k", ls="--", lw=0.8, label=f"tolerance ±{limit:g}%")
        ax.axhline(-limit, color="k", ls="--", lw=0.8)
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set(ylabel="deviation (%)", title=f"{what}, per sensor", xlim=(-0.5, len(records) - 0.5))
    for ax in (ax_f, ax_s):
        ax.set_xticks(x, names, rotation=90 if len(names) > 12 else 0, fontsize=7 if len(names) > 12 else 9)
        ax.legend(fontsize=8)
    if stars and len(stars) <= 12:
        ax_a.legend(fontsize=7)
    visit = records[0]["visit"] if records else "?"
    if records and records[0].get("snap"):
        visit = f"{visit} snap {records[0]['snap']}"
    fig.suptitle(f"visit {visit}: {len(records)} sensors, {len(flagged)} flagged"
                 + (f" ({', '.join(sorted(flagged))})" if flagged else ""))
    fig.tight_layout()
    _savefig(fig, out)


# --- pictures ----------------------------------------------------------------------------------------

def plot_resources(campaign_json: str | os.PathLike, estimates: Sequence[str | os.PathLike],
                   benchmarks: Sequence[str | os.PathLike], out_png: str | os.PathLike) -> int:
    """The bundle plan's summary and each render job's measured peak memory and wall time vs the estimate.

    Parameters:
        campaign_json: the bundle summary (``bundles/campaign.json``; ``bundles/{shard}/`` in a shard).
        estimates:     the estimates tables (``estimates/{visit}.tsv``).
        benchmarks:    render benchmark records (``benchmarks/render/{visit}/{band}-{det_name}-det{num}.tsv``);
                       missing files are skipped (a job not run yet, or run elsewhere).
        out_png:       the figure.

    Returns:
        the number of render jobs plotted.
    """

    from .estimate import read_estimates

    est = {}
    for path in estimates:
        for row in read_estimates(path):
            est[(row["visit"], row["snap"], row["det_name"])] = (row["mem_gb"], row["runtime_s"])
    points = []
    for path in benchmarks:
        key = render_benchmark_key(path)
        if key is None or not os.path.exists(path):
            continue
        bench = read_benchmark(path)
        if key in est and bench["max_rss_mb"] is not None and bench["runtime_s"] is not None:
            points.append((*est[key], bench["max_rss_mb"] / 1024.0, bench["runtime_s"]))
    with open(campaign_json) as fh:
        summary = json.load(fh)
    plt = _pyplot()
    fig, (ax_m, ax_t, ax_x) = plt.subplots(1, 3, figsize=(14, 4.6), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    p = np.array(points, dtype=float).reshape(-1, 4)
    for ax, (ie, im), unit, name in ((ax_m, (0, 2), "GB", "peak memory"), (ax_t, (1, 3), "s", "wall time")):
        ax.scatter(p[:, ie], p[:, im], s=14)
        top = float(np.nanmax(p[:, [ie, im]])) * 1.1 if len(p) else 1.0
        ax.plot([0, top], [0, top], "k--", lw=0.8, label="measured = estimate")
        ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"estimated {name} ({unit})", ylabel=f"measured {name} ({unit})",
               title=f"{name} of {len(p)} render jobs")
        ax.legend(fontsize=8)
    keys = ("n_jobs", "n_visits", "n_bundles", "lower_bound", "ffd_bundles", "dc2_flat_bundles", "gap",
            "mem_utilisation", "core_utilisation", "method", "solver", "status", "solve_time_s")
    lines = [f"{k:18s} {_fmt(summary[k]) if not isinstance(summary.get(k), float) else f'{summary[k]:.3g}'}"
             for k in keys if k in summary]
    ax_x.axis("off")
    ax_x.text(0.0, 1.0, "bundle plan (bundles/campaign.json)\n\n" + "\n".join(lines), va="top", family="monospace",
              fontsize=9, transform=ax_x.transAxes)
    fig.tight_layout()
    _savefig(fig, out_png)
    return len(p)
