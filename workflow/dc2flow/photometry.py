"""Photometry: SEDs, dust, LSST bandpasses, object fluxes and the sky level.

An object's flux follows imSim: ``magnorm`` is the AB magnitude of its rest-frame SED at 500 nm
(monochromatic: its photon flux density there is ``10^(-0.4 magnorm)`` times `AB0_PHOTONS_500NM`); the SED is dimmed by internal CCM dust in the rest frame, redshifted (GalSim's
``SED.atRedshift`` convention: photon flux density f(lambda / (1+z))), dimmed by Milky-Way CCM dust
in the observed frame, and integrated through the LSST bandpass of the visit's band (GalSim's
``LSST_{band}.dat``, which includes a standard atmosphere) x exposure time x collecting area of an
8.36 m mirror with a 0.61 linear obscuration.  The result is in photons (= electrons: the
bandpass includes the detector QE).

Dust uses the ``dust_extinction`` package's CCM89 law.  CCM89 is ``A(x)/A_V = a(x) + b(x)/R_V``, so
``a`` and ``b`` are read off the library at two R_V values once, and any R_V then costs a
multiply-add; wavelengths outside the law's range (100 nm - 3.3 um, e.g. u band at z > 2.2 in the
rest frame) take the value at the nearest end of the range.

SED names resolve against a configurable SED directory (DESC's SED library layout, gzipped or
plain two-column ``nm flambda`` files).  A name not found falls back to: a blackbody at the
temperature in a star SED's name (Kurucz ``..._4520.gz`` -> 4520 K, MLT ``lte033-...`` -> 3300 K,
white dwarf ``bergeron_10000_75.dat_10100.gz`` -> 10100 K; 5800 K when no temperature can be read),
or GalSim's CWW Sbc template for any other name.  Fallbacks are counted.

A *tophat* SED (skyCatalogs' cosmoDC2 galaxies: one value of L_nu per wide wavelength bin) is not a
file but the name itself: ``tophat:<start>+<width>,...|<value>,...`` (bins in nm, see
:func:`tophat_sed_name`).  As skyCatalogs' ``TophatSedFactory``, each bin's L_nu becomes a constant
f_lambda over the bin (``L_nu * dnu / dlambda``) and the SED is zero outside the bins; it is then
normalised to magnorm 0 at 500 nm like any other SED, redshifted and dimmed the same way, and
integrated through the band on a 0.05 nm grid (the bins' edges are steps; a 1 nm grid would miss
up to half a nanometre of a step).  Tophat SEDs are computed per object and never fall back.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass

import numpy as np

BANDS = "ugrizy"
MIRROR_DIAMETER_CM = 836.0
LINEAR_OBSCURATION = 0.61
COLLECTING_AREA_CM2 = math.pi / 4 * MIRROR_DIAMETER_CM**2 * (1 - LINEAR_OBSCURATION**2)
HC_ERG_NM = 6.62607015e-27 * 2.99792458e17      # Planck constant x speed of light, erg nm
K_B_ERG_PER_K = 1.380649e-16
FALLBACK_STAR_TEMPERATURE_K = 5800.0
FALLBACK_GALAXY_SED = "CWW_Sbc_ext.sed"          # shipped with GalSim, Angstrom / flambda
MAGNORM_WAVELENGTH_NM = 500.0
#: Photons / s / cm^2 / nm at 500 nm of a source of AB magnitude 0 (f_nu = 10^(-48.6 / 2.5) erg/s/cm^2/Hz):
#: an SED of magnorm m has ``10^(-0.4 m)`` times this photon flux density at 500 nm (rest frame), as
#: imSim's ``InstCatalog`` normalises (``withFluxDensity`` at 500 nm) and skyCatalogs' ``normalize_sed``.
AB0_PHOTONS_500NM = 10 ** (-0.4 * 48.6) / (6.62607015e-27 * MAGNORM_WAVELENGTH_NM)
_CCM_RV = (3.1, 5.0)                             # two R_V values to read a(x), b(x) off the law
_BAND_GRID_STEP_NM = 1.0


@functools.lru_cache(maxsize=None)
def bandpass(band: str):
    """GalSim's LSST bandpass for ``band`` (u..y), wavelengths in nm.

    The file is GalSim's ``LSST_{band}.dat``, read here with numpy: given the name, GalSim reads it
    with pandas, whose import costs every render job ~0.2 s and ~40 MB for two columns of ~100
    numbers.  The table is the same to the last bit (``tests/test_photometry.py`` checks it).
    """
    import galsim

    path = os.path.join(galsim.meta_data.share_dir, "bandpasses", f"LSST_{band}.dat")
    wave, throughput = np.loadtxt(path, unpack=True)
    return galsim.Bandpass(galsim.LookupTable(wave, throughput, interpolant="linear"), wave_type="nm")


@functools.lru_cache(maxsize=None)
def band_grid(band: str) -> tuple[np.ndarray, np.ndarray]:
    """A 1 nm wavelength grid over the band and the throughput on it (for fast integrals)."""
    bp = bandpass(band)
    wave = np.arange(bp.blue_limit, bp.red_limit + 0.5 * _BAND_GRID_STEP_NM, _BAND_GRID_STEP_NM)
    return wave, np.asarray(bp(wave), dtype=float)


def effective_wavelength_nm(band: str) -> float:
    """Throughput-weighted mean wavelength of the band (GalSim's definition)."""
    return float(bandpass(band).effective_wavelength)


@functools.lru_cache(maxsize=None)
def ab_zero_photons(band: str) -> float:
    """Photons per s per cm^2 through ``band`` from a flat-f_nu source of AB magnitude 0."""
    import galsim

    flat = galsim.SED(galsim.LookupTable([50.0, 3000.0], [1.0, 1.0]), "nm", "fnu")
    bp = bandpass(band).withZeropoint("AB")
    return float(flat.withMagnitude(0.0, bp).calculateFlux(bp))


def sky_electrons_per_pixel(band: str, sky_mag_zenith: float, airmass: float, exptime_s: float,
                            pixel_scale_arcsec: float) -> float:
    """Mean sky level in electrons per pixel.

    The dark-sky surface brightness at zenith (AB mag / arcsec^2) brightens in proportion to the
    airmass (a plane-parallel glowing layer).
    """
    rate = 10 ** (-0.4 * sky_mag_zenith) * ab_zero_photons(band) * COLLECTING_AREA_CM2
    return rate * exptime_s * pixel_scale_arcsec**2 * airmass


def sky_brightness_mag(band: str, sky_e_per_px: float, exptime_s: float, pixel_scale_arcsec: float) -> float:
    """The sky surface brightness (AB mag / arcsec^2, as OpSim's ``skyBrightness``: at the pointing,
    airmass included) that gives ``sky_e_per_px`` electrons per pixel; the inverse of
    :func:`sky_electrons_per_pixel` at airmass 1."""
    rate = sky_e_per_px / (exptime_s * pixel_scale_arcsec**2)
    return -2.5 * math.log10(rate / (ab_zero_photons(band) * COLLECTING_AREA_CM2))


def five_sigma_depth(band: str, sky_e_per_px: float, fwhm_eff_arcsec: float, exptime_s: float,
                     pixel_scale_arcsec: float) -> float:
    """AB magnitude of a point source detected at 5 sigma against the sky (sky-noise limited, as
    OpSim's ``fiveSigmaDepth``; no read noise): flux ``5 sqrt(n_eff * sky)`` with
    ``n_eff = 2.266 (FWHMeff / pixel)^2`` (LSST SMTN-002)."""
    n_eff = 2.266 * (fwhm_eff_arcsec / pixel_scale_arcsec) ** 2
    electrons = 5.0 * math.sqrt(n_eff * sky_e_per_px)
    return -2.5 * math.log10(electrons / (ab_zero_photons(band) * COLLECTING_AREA_CM2 * exptime_s))


# --- dust ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _ccm_ab() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x grid in 1/um, a(x), b(x)) of CCM89, read off ``dust_extinction`` at two R_V values."""
    from dust_extinction.parameter_averages import CCM89
    import astropy.units as u

    x = np.linspace(0.3, 10.0, 4000)
    k1 = np.asarray(CCM89(Rv=_CCM_RV[0])(x / u.micron))
    k2 = np.asarray(CCM89(Rv=_CCM_RV[1])(x / u.micron))
    b = (k1 - k2) / (1 / _CCM_RV[0] - 1 / _CCM_RV[1])
    a = k1 - b / _CCM_RV[0]
    return x, a, b


def ccm_transmission(wave_nm: np.ndarray, av: np.ndarray, rv: np.ndarray) -> np.ndarray:
    """10^(-0.4 A(lambda)) for CCM89 dust; ``av``/``rv`` broadcast against ``wave_nm``."""
    x_grid, a_grid, b_grid = _ccm_ab()
    x = np.clip(1000.0 / np.asarray(wave_nm, dtype=float), x_grid[0], x_grid[-1])
    a = np.interp(x, x_grid, a_grid)
    b = np.interp(x, x_grid, b_grid)
    rv = np.where(np.asarray(rv) > 0, rv, 3.1)
    return 10 ** (-0.4 * np.asarray(av) * (a + b / rv))


# --- SEDs ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SedTable:
    """A rest-frame SED sampled on a wavelength grid, normalised to magnorm 0.

    Parameters:
        wave_nm:   wavelengths (nm), increasing.
        fphot:     photon flux density (photons/s/cm^2/nm) of the SED scaled to AB magnitude 0 at
                   500 nm (`AB0_PHOTONS_500NM` there).
        fallback:  '' when read from the library, else what replaced it (``blackbody 4520K``).
    """

    wave_nm: np.ndarray
    fphot: np.ndarray
    fallback: str = ""


_TEMPERATURE_PATTERNS = (
    (re.compile(r"kurucz/.*_(\d{4,5})\.gz$|km\d+_\d+\.fits_g\d+_(\d{4,5})"), 1.0),
    (re.compile(r"lte(\d{3})-"), 100.0),
    (re.compile(r"bergeron.*_(\d{4,6})\.gz$"), 1.0),
)


def star_temperature_from_name(name: str) -> float | None:
    """The effective temperature encoded in a DESC star SED name, or None."""
    for pattern, scale in _TEMPERATURE_PATTERNS:
        m = pattern.search(name)
        if m:
            digits = next(g for g in m.groups() if g)
            return float(digits) * scale
    return None


class SedLibrary:
    """Resolves SED names to normalised :class:`SedTable` objects, with caching and fallbacks.

    Parameters:
        sed_dir:  root of a DESC-style SED library (``starSED/...``, ``galaxySED/...``), or None
                  to use the fallbacks for every name [default: None].
    """

    def __init__(self, sed_dir: str | os.PathLike | None = None):
        self.sed_dir = os.fspath(sed_dir) if sed_dir else None
        self._cache: dict[str, SedTable] = {}

    def get(self, name: str) -> SedTable:
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def _load(self, name: str) -> SedTable:
        path = os.path.join(self.sed_dir, name) if self.sed_dir else None
        if path and os.path.isfile(path):
            data = np.loadtxt(path, comments="#", usecols=(0, 1))
            wave, flambda, fallback = data[:, 0], data[:, 1], ""
        elif "starSED" in name or star_temperature_from_name(name) is not None:
            temp = star_temperature_from_name(name) or FALLBACK_STAR_TEMPERATURE_K
            wave = np.geomspace(50.0, 3000.0, 3000)
            flambda = wave**-5 / np.expm1(HC_ERG_NM / (wave * K_B_ERG_PER_K * temp))
            fallback = f"blackbody {temp:.0f}K"
        else:
            import galsim

            cww = os.path.join(galsim.meta_data.share_dir, "SEDs", FALLBACK_GALAXY_SED)
            data = np.loadtxt(cww)
            wave, flambda, fallback = data[:, 0] / 10.0, data[:, 1], f"galaxy {FALLBACK_GALAXY_SED}"
        return _normalised(wave, flambda, fallback)


def _normalised(wave: np.ndarray, flambda: np.ndarray, fallback: str) -> SedTable:
    import galsim

    order = np.argsort(wave, kind="stable")
    wave, flambda = wave[order], np.clip(flambda[order], 0.0, None)
    sed = galsim.SED(galsim.LookupTable(wave, flambda, interpolant="linear"), "nm", "flambda")
    # imSim's InstCatalog: AB magnitude 0 at 500 nm, monochromatic (withMagnitude through GalSim's
    # Bandpass of LookupTable([499, 500, 501], [0, 1, 0]) is 1.25x brighter: that table's default
    # spline interpolant gives the AB zeropoint an area of 1.25, the linear SED's integral 1)
    sed = sed.withFluxDensity(AB0_PHOTONS_500NM, MAGNORM_WAVELENGTH_NM)
    return SedTable(wave_nm=wave, fphot=np.asarray(sed(wave), dtype=float), fallback=fallback)


# --- tophat SEDs (skyCatalogs' galaxies) -------------------------------------------------------

TOPHAT_PREFIX = "tophat:"
_TOPHAT_STEP_NM = 0.05


def tophat_sed_name(start_nm, width_nm, values) -> str:
    """The SED name of a tophat SED: ``tophat:<start>+<width>,...|<value>,...``.

    Parameters:
        start_nm:  each bin's first wavelength, nm.
        width_nm:  each bin's width, nm (> 0).
        values:    each bin's L_nu (any unit: only the shape counts, magnorm sets the level); the
                   values are written relative to the largest, to 7 significant digits.

    Raises:
        ValueError: lengths differ, a width is not positive, or a value is negative or not finite.
    """
    start, width, vals = (np.asarray(a, dtype=float) for a in (start_nm, width_nm, values))
    if not (start.shape == width.shape == vals.shape) or start.ndim != 1 or start.size == 0:
        raise ValueError(f"tophat SED: {start.size} bins, {width.size} widths and {vals.size} values")
    if not (np.all(np.isfinite(vals)) and np.all(vals >= 0) and np.all(width > 0)):
        raise ValueError("tophat SED: values must be finite and >= 0, widths > 0")
    top = vals.max()
    rel = vals / top if top > 0 else vals
    bins = ",".join(f"{a:.10g}+{w:.10g}" for a, w in zip(start, width))
    return TOPHAT_PREFIX + bins + "|" + ",".join(f"{v:.7g}" for v in rel)


def parse_tophat(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lo_nm, hi_nm, values)`` of a :func:`tophat_sed_name` name.

    Raises:
        ValueError: the name is not a well-formed tophat SED.
    """
    try:
        bins, values = name[len(TOPHAT_PREFIX):].split("|")
        pairs = np.array([[float(x) for x in b.split("+")] for b in bins.split(",")], dtype=float)
        vals = np.array([float(v) for v in values.split(",")], dtype=float)
    except ValueError as e:
        raise ValueError(f"not a tophat SED name ({name[:60]!r}...): {e}") from None
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) != len(vals):
        raise ValueError(f"not a tophat SED name ({name[:60]!r}...): bins and values differ in number")
    return pairs[:, 0], pairs[:, 0] + pairs[:, 1], vals


def _tophat_flambda(lo: np.ndarray, hi: np.ndarray, values: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """f_lambda (shape) of tophat SEDs at rest wavelengths ``wave`` (objects x points); ``values``
    objects x bins.  L_nu -> L_lambda per bin: ``L_nu * dnu / dlambda = L_nu * c / (lo * hi)``."""
    flam = values / (lo * hi)[None, :]
    idx = np.clip(np.searchsorted(lo, wave, side="right") - 1, 0, len(lo) - 1)
    inside = (wave >= lo[idx]) & (wave < hi[idx])
    return np.where(inside, np.take_along_axis(flam, idx, axis=1), 0.0)


@functools.lru_cache(maxsize=None)
def _fine_band_grid(band: str) -> tuple[np.ndarray, np.ndarray]:
    bp = bandpass(band)
    wave = np.arange(bp.blue_limit, bp.red_limit + 0.5 * _TOPHAT_STEP_NM, _TOPHAT_STEP_NM)
    return wave, np.asarray(bp(wave), dtype=float)


def _tophat_photons(names: list[str], z: np.ndarray, dust: dict, band: str, chunk: int = 256) -> np.ndarray:
    """Photons per s per cm^2 at magnorm 0 of tophat-SED objects (before ``10^(-0.4 magnorm)``)."""
    wave, thru = _fine_band_grid(band)
    w500 = np.array([[MAGNORM_WAVELENGTH_NM]])
    out = np.zeros(len(names))
    groups: dict[str, list[int]] = {}
    parsed = [parse_tophat(n) for n in names]
    for i, name in enumerate(names):
        groups.setdefault(name.split("|", 1)[0], []).append(i)
    for members in groups.values():
        lo, hi, _ = parsed[members[0]]
        for start in range(0, len(members), chunk):
            idx = np.asarray(members[start:start + chunk])
            vals = np.stack([parsed[i][2] for i in idx])
            # photon flux density ~ f_lambda * lambda; magnorm 0: AB 0 at 500 nm (zero where no bin holds it)
            at500 = _tophat_flambda(lo, hi, vals, np.broadcast_to(w500, (len(idx), 1)))[:, 0] * MAGNORM_WAVELENGTH_NM
            norm = np.divide(AB0_PHOTONS_500NM, at500, out=np.zeros_like(at500), where=at500 > 0)
            rest = wave[None, :] / (1.0 + z[idx, None])
            f = _tophat_flambda(lo, hi, vals, rest) * rest * norm[:, None]
            f = f * ccm_transmission(rest, dust["internal_av"][idx, None], dust["internal_rv"][idx, None])
            f = f * ccm_transmission(wave[None, :], dust["galactic_av"][idx, None], dust["galactic_rv"][idx, None])
            out[idx] = np.trapezoid(f * thru[None, :], wave, axis=1)
    return out


def object_photons(objects, band: str, exptime_s: float, seds: SedLibrary,
                   chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Expected photons (electrons) from each object in one exposure.

    Parameters:
        objects:   a table with columns ``sed, magnorm, redshift, internal_av, internal_rv,
                   galactic_av, galactic_rv`` (pandas DataFrame).
        band:      u..y.
        exptime_s: exposure time.
        seds:      the :class:`SedLibrary` to resolve names with (tophat SEDs, named
                   ``tophat:...``, need none: see :func:`tophat_sed_name`).

    Returns:
        (photons, fallback) arrays: the flux, and True where the SED was a fallback.
    """
    wave, thru = band_grid(band)
    n = len(objects)
    photons = np.zeros(n)
    fallback = np.zeros(n, dtype=bool)
    if n == 0:
        return photons, fallback
    scale = 10 ** (-0.4 * objects["magnorm"].to_numpy(float)) * COLLECTING_AREA_CM2 * exptime_s
    z_all = objects["redshift"].to_numpy(float)
    cols = {c: objects[c].to_numpy(float) for c in ("internal_av", "internal_rv", "galactic_av", "galactic_rv")}
    names = objects["sed"].astype(str).to_numpy()
    tophat = np.char.startswith(names.astype(str), TOPHAT_PREFIX)
    if tophat.any():
        where = np.flatnonzero(tophat)
        sub = {c: v[where] for c, v in cols.items()}
        photons[where] = _tophat_photons(list(names[where]), z_all[where], sub, band)
    others = np.flatnonzero(~tophat)  # positions of the named (file) SEDs
    for name, index in objects.iloc[others].groupby("sed", sort=True).indices.items():
        index = others[index]
        table = seds.get(name)
        fallback[index] = bool(table.fallback)
        for start in range(0, len(index), chunk):
            idx = index[start:start + chunk]
            rest = wave[None, :] / (1.0 + z_all[idx, None])
            f = np.interp(rest, table.wave_nm, table.fphot, left=0.0, right=0.0)
            f = f * ccm_transmission(rest, cols["internal_av"][idx, None], cols["internal_rv"][idx, None])
            f = f * ccm_transmission(wave[None, :], cols["galactic_av"][idx, None], cols["galactic_rv"][idx, None])
            photons[idx] = np.trapezoid(f * thru[None, :], wave, axis=1)
    return photons * scale, fallback
