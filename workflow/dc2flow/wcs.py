"""Each sensor's WCS the way imSim v2 builds it: ERFA's apparent place and refraction, batoid's ray
trace of Rubin's optics, Rubin's camera geometry, and a fitted TAN-SIP.

The chain, for one visit (imSim's ``imsim/batoid_wcs.py`` conventions, re-derived here):

1. **ICRF -> observed** (``erfa.atco13``): precession, nutation, aberration, the Earth's rotation
   and atmospheric refraction at the band's effective wavelength, for the site, temperature,
   pressure and humidity of :class:`WcsSettings`, at the observation time (TAI, the middle of the
   snap; UT1-UTC from the IERS-A table bundled with astropy, never a download, unless ``dut1_s``
   is given: :func:`ut1_minus_utc`).
2. **observed -> field angle**: gnomonic about the observed boresight, axes turned by the
   parallactic angle ``q`` (``erfa.hd2pa``) so +thy points to the zenith and +thx to +azimuth.
3. **field angle -> focal plane**: batoid traces rays of that field angle through Rubin's optics
   for the band (``LSST_<band>.yaml``) with the camera rotated by ``RotZ(rotTelPos)`` (no +180:
   imSim adds 180 only in tests of DC2-era data, simulated with the camera upside down), to the
   detector; batoid's camera-frame (x, y) are transposed into DM's focal-plane (x, y) (LSE-349).
4. **focal plane -> pixels**: :meth:`dc2flow.camera.Sensor.focal_plane_to_pixel` (DM's 0-based pixels).
5. On a hexapolar grid of 97 field angles around the sensor centre (imSim's), ICRF and pixel
   positions are paired and ``galsim.FittedSIPWCS`` fits a TAN-SIP of order ``sip_order`` (3).

The header WCS places every object (partition computes pixel positions with the same fitted WCS
the render writes, so image and header agree exactly), and each object's shape is mapped with the
WCS's local Jacobian at its own position (:func:`local_jacobians`).

Site constants (``camera.site``): ``obs_lsst`` (default; obs_lsst's ``SIMONYI_LOCATION``, what
imSim uses since 2023: lon -70.749417, lat -30.244639 deg, 2663 m) or ``imsim-2022`` (the constants
imSim used until 2023: -70.7494, -30.2444, 2650 m, with which imSim's eimage of visit 449053 was
made).  The two differ by <= 0.03 px on R22_S11 and ~0.3 px on corner sensors.  Temperature 280 K,
pressure 101.325 (1 - 2.25577e-5 * 2715)^5.25588 kPa (Cerro Pachon's altitude in imSim's formula)
and water vapour pressure 1 kPa are imSim's defaults.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np

from .camera import Sensor
from .errors import WcsError

MJD_ZERO_JD = 2400000.5   # JD of MJD 0

#: site -> (longitude deg, latitude deg, height m)
SITES = {"obs_lsst": (-70.749417, -30.244639, 2663.0), "imsim-2022": (-70.7494, -30.2444, 2650.0)}
DEFAULT_PRESSURE_KPA = 101.325 * (1 - 2.25577e-5 * 2715) ** 5.25588
WCS_KEYS_PREFIXES = ("A_", "B_", "AP_", "BP_")
NOMINAL_PLATE_SCALE_ARCSEC_PER_MM = 20.005867576692737   # obs_lsst's; only focal_to_field's first guess
_HEX_RINGS = 5
_HEX_MAX_DEG = 0.16


@dataclass(frozen=True)
class WcsSettings:
    """How the WCS is built (config section ``camera``).

    Parameters:
        site:             ``obs_lsst`` or ``imsim-2022`` (:data:`SITES`). [default: obs_lsst]
        temperature_k:    ambient temperature, K. [default: 280]
        pressure_kpa:     ambient pressure, kPa; None: imSim's default for 2715 m (73.9 kPa). [default: None]
        h2o_pressure_kpa: water vapour pressure, kPa. [default: 1.0]
        sip_order:        order of the fitted SIP polynomials. [default: 3]
        dut1_s:           UT1 - UTC, seconds; None: :func:`ut1_minus_utc`. [default: None]
        optics:           batoid optics file, ``<band>`` replaced by the band. [default: LSST_<band>.yaml]
    """

    site: str = "obs_lsst"
    temperature_k: float = 280.0
    pressure_kpa: float | None = None
    h2o_pressure_kpa: float = 1.0
    sip_order: int = 3
    dut1_s: float | None = None
    optics: str = "LSST_<band>.yaml"

    @classmethod
    def from_options(cls, options: dict | None) -> "WcsSettings":
        section = dict((options or {}).get("camera") or {})
        section.pop("description", None)
        optional = {"pressure_kpa", "dut1_s"}           # None is a value of these: "imSim's default"
        known = set(cls.__dataclass_fields__)
        settings = cls(**{k: v for k, v in section.items() if k in known and (v is not None or k in optional)})
        if settings.site not in SITES:
            raise WcsError("camera.site", "unknown site", settings.site, f"use one of {sorted(SITES)}")
        return settings

    @property
    def pressure(self) -> float:
        return DEFAULT_PRESSURE_KPA if self.pressure_kpa is None else float(self.pressure_kpa)


def _quiet_erfa(func):
    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        import erfa

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=erfa.ErfaWarning)
            return func(*args, **kwargs)
    return wrapped


IERS_A_COLUMNS = {"mjd": (7, 15), "pm_flag": (16, 17), "ut1_utc_a": (58, 68), "ut1_utc_b": (154, 165)}
"""0-based [start, end) columns of the IERS-A ``finals2000A.all`` fields read (its ReadMe: MJD 8-15,
polar-motion flag 17, Bulletin A UT1-UTC 59-68, Bulletin B UT1-UTC 155-165)."""


@functools.lru_cache(maxsize=1)
def _ut1_utc_table() -> tuple[np.ndarray, np.ndarray]:
    """(MJD UTC, UT1-UTC seconds) of the IERS-A table bundled with astropy (``astropy_iers_data``):
    Bulletin B where the row has it, else Bulletin A (measured or predicted); rows without a
    UT1-UTC value or polar motion (the table's empty future) left out, as astropy does.

    Read here in ~30 ms instead of astropy's ``IERS_Auto`` (~1.5 s per process: it parses this
    file into a Table and merges the 5 MB IERS-B file into it); astropy's IERS-B substitution is
    not repeated (it changes UT1-UTC by < 1 ms, tests/test_wcs.py)."""
    from astropy_iers_data import IERS_A_FILE

    cols = IERS_A_COLUMNS
    mjd, dut1 = [], []
    with open(IERS_A_FILE, encoding="ascii") as fh:
        for line in fh:
            a = line[slice(*cols["ut1_utc_a"])].strip()
            if not a or not line[slice(*cols["pm_flag"])].strip():
                continue
            b = line[slice(*cols["ut1_utc_b"])].strip()
            mjd.append(float(line[slice(*cols["mjd"])]))
            dut1.append(float(b or a))
    if len(mjd) < 2:
        raise WcsError("camera.dut1_s", f"no UT1-UTC values in {IERS_A_FILE}", None,
                       "reinstall astropy-iers-data, or give camera.dut1_s")
    return np.asarray(mjd), np.asarray(dut1)


def ut1_minus_utc(mjd_utc: float) -> float:
    """UT1 - UTC (seconds) at ``mjd_utc`` from the bundled IERS-A table (:func:`_ut1_utc_table`):
    linear between the table's days, a leap second's jump taken out of the step (astropy's
    ``IERS._interpolate``), and beyond either end the end's value (no extrapolation; the
    predictions reach about a year past the astropy-iers-data release)."""
    mjd, dut1 = _ut1_utc_table()
    i = int(np.searchsorted(mjd, mjd_utc, side="right"))
    if i == 0:
        return float(dut1[0])
    if i == len(mjd):
        return float(dut1[-1])
    d = dut1[i] - dut1[i - 1]
    d -= round(d)
    return float(dut1[i - 1] + (mjd_utc - mjd[i - 1]) / (mjd[i] - mjd[i - 1]) * d)


class Site:
    """ERFA's observed place for one site, time, atmosphere and wavelength (all angles radians).

    Parameters:
        mjd_tai:        the time, MJD (TAI).
        wavelength_nm:  the effective wavelength of refraction.
        settings:       :class:`WcsSettings`.
    """

    def __init__(self, mjd_tai: float, wavelength_nm: float, settings: WcsSettings):
        import erfa

        lon, lat, height = SITES[settings.site]
        self.elong, self.phi, self.hm = math.radians(lon), math.radians(lat), float(height)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=erfa.ErfaWarning)   # "dubious year": past the leap-second table
            self.utc1, self.utc2 = erfa.taiutc(MJD_ZERO_JD, float(mjd_tai))
        mjd_utc = (self.utc1 - MJD_ZERO_JD) + self.utc2
        self.dut1 = ut1_minus_utc(mjd_utc) if settings.dut1_s is None else float(settings.dut1_s)
        self.phpa = settings.pressure * 10.0                 # kPa -> hPa
        self.tc = settings.temperature_k - 273.14            # imSim's conversion, kept for agreement
        es = 6.11 * math.exp(17.27 * self.tc / (237.3 + self.tc))   # saturation vapour pressure, hPa
        self.rh = settings.h2o_pressure_kpa / es              # imSim's relative humidity (kPa / hPa, sic)
        self.wl_um = wavelength_nm * 1e-3

    def _args(self):
        return (self.utc1, self.utc2, self.dut1, self.elong, self.phi, self.hm, 0.0, 0.0, self.phpa, self.tc,
                self.rh, self.wl_um)

    @functools.cached_property
    def _astrom(self):
        """ERFA's star-independent astrometry parameters (``apco13``), once per site and time:
        ``atco13`` = ``apco13`` + ``atciq`` + ``atioq``, so per object only the last two run."""
        import erfa

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=erfa.ErfaWarning)
            astrom, _ = erfa.apco13(*self._args())
        return astrom

    @_quiet_erfa
    def icrf_to_observed(self, rc, dc):
        """ICRF (ra, dec) -> (azimuth, zenith distance, hour angle, observed dec, observed ra)."""
        import erfa

        ri, di = erfa.atciq(rc, dc, 0.0, 0.0, 0.0, 0.0, self._astrom)
        aob, zob, hob, dob, rob = erfa.atioq(ri, di, self._astrom)
        return aob, zob, hob, dob, rob

    @_quiet_erfa
    def observed_to_icrf(self, kind: str, a, b):
        """Observed (kind ``R``: ra, dec; ``A``: azimuth, zenith distance) -> ICRF (ra, dec)."""
        import erfa

        ri, di = erfa.atoiq(kind, a, b, self._astrom)
        return erfa.aticq(ri, di, self._astrom)

    @_quiet_erfa
    def parallactic_angle(self, rc: float, dc: float) -> float:
        """q: position angle of the zenith from true north through east at the boresight (radians)."""
        import erfa

        _, _, hob, dob, _ = self.icrf_to_observed(rc, dc)
        return float(erfa.hd2pa(hob, dob, self.phi))


def wavelength_nm(band: str) -> float:
    """The band's effective wavelength for refraction and the ray trace (GalSim's LSST bandpass)."""
    from .photometry import effective_wavelength_nm

    return effective_wavelength_nm(band)


def rotation_angles(ra_deg: float, dec_deg: float, mjd_tai: float, band: str, rotskypos_deg: float | None,
                    rottelpos_deg: float | None, settings: WcsSettings = WcsSettings()) -> tuple[float, float]:
    """(rotSkyPos, rotTelPos) in degrees, one derived from the other where only one is given:
    ``rotTelPos = rotSkyPos + q``, q the parallactic angle at the boresight at the visit's time
    (``erfa.hd2pa`` of the observed place).

    Which q: DC2's instance catalogs (imSim's example catalog, Run 2.2i's 466749) satisfy this with
    ERFA's q within 0.04 deg (imSim's ICRF pseudo-parallactic angle ``pq``: 0.12 deg).  Today's OpSim
    instead computes rotSkyPos with its own ``paraAngle``, from the mean LST and J2000 coordinates
    (visit 449053: 272.675 deg, ERFA's 272.26): OpSim visits carry rotTelPos, which is used as given.
    """
    if rotskypos_deg is not None and rottelpos_deg is not None:
        return float(rotskypos_deg), float(rottelpos_deg)
    if rotskypos_deg is None and rottelpos_deg is None:
        raise WcsError("rotation", "neither rotSkyPos nor rotTelPos given", fix="give one of them")
    site = Site(mjd_tai, wavelength_nm(band), settings)
    q = math.degrees(site.parallactic_angle(math.radians(ra_deg), math.radians(dec_deg)))
    if rottelpos_deg is None:
        return float(rotskypos_deg) % 360.0, (float(rotskypos_deg) + q) % 360.0
    return (float(rottelpos_deg) - q) % 360.0, float(rottelpos_deg) % 360.0


@functools.lru_cache(maxsize=16)
def _telescope(optics: str, rottelpos_deg: float):
    import batoid

    try:
        telescope = batoid.Optic.fromYaml(optics)
    except (FileNotFoundError, OSError) as e:
        raise WcsError("camera.optics", "cannot load the batoid optics", optics, f"give a file batoid ships ({e})") \
            from None
    return telescope.withLocallyRotatedOptic("LSSTCamera", batoid.RotZ(math.radians(rottelpos_deg)))


class VisitWcs:
    """The sky -> focal plane -> pixel mapping of one visit (see the module docstring).

    Parameters:
        ra_deg, dec_deg: ICRF position of the light that reaches the boresight (fieldRA, fieldDec).
        mjd_tai:         observation time (TAI, MJD; middle of the snap).
        band:            u..y.
        rottelpos_deg:   the rotator angle.
        settings:        :class:`WcsSettings`.
    """

    def __init__(self, ra_deg: float, dec_deg: float, mjd_tai: float, band: str, rottelpos_deg: float,
                 settings: WcsSettings = WcsSettings()):
        import galsim

        self.settings, self.band = settings, band
        self.ra_deg, self.dec_deg, self.mjd_tai, self.rottelpos_deg = ra_deg, dec_deg, mjd_tai, rottelpos_deg
        self.wavelength_nm = wavelength_nm(band)
        self.site = Site(mjd_tai, self.wavelength_nm, settings)
        rc, dc = math.radians(ra_deg), math.radians(dec_deg)
        aob, zob, _, dob, rob = self.site.icrf_to_observed(rc, dc)
        self.q = self.site.parallactic_angle(rc, dc)
        self.altitude_deg = 90.0 - math.degrees(float(zob))
        self.azimuth_deg = math.degrees(float(aob)) % 360.0
        cq, sq = math.cos(self.q), math.sin(self.q)
        self._field = galsim.TanWCS(galsim.AffineTransform(cq, sq, sq, -cq),
                                    galsim.CelestialCoord(float(rob) * galsim.radians, float(dob) * galsim.radians),
                                    units=galsim.radians)
        self.telescope = _telescope(settings.optics.replace("<band>", band), float(rottelpos_deg))

    # --- the chain -------------------------------------------------------------------------------
    def field_to_focal(self, thx, thy):
        """Field angles (radians) -> DM focal-plane mm (batoid x/y transposed; vignetted rays are
        traced all the same)."""
        import batoid

        thx, thy = np.atleast_1d(np.asarray(thx, float)), np.atleast_1d(np.asarray(thy, float))
        rv = batoid.RayVector.fromFieldAngles(thx, thy, projection="gnomonic", optic=self.telescope,
                                              wavelength=self.wavelength_nm * 1e-9)
        self.telescope.trace(rv)
        return rv.y * 1e3, rv.x * 1e3

    def focal_to_field(self, fpx: float, fpy: float) -> tuple[float, float]:
        """DM focal-plane mm -> field angles (radians), by Newton's method on the ray trace."""
        scale = math.radians(NOMINAL_PLATE_SCALE_ARCSEC_PER_MM / 3600.0)
        # batoid's camera frame is DM's transposed: start from the plate scale's guess
        th = np.array([fpy, fpx]) * scale
        h = 1e-7
        for _ in range(20):
            fx, fy = self.field_to_focal([th[0], th[0] + h, th[0]], [th[1], th[1], th[1] + h])
            f0 = np.array([fx[0], fy[0]])
            jac = np.array([[fx[1] - fx[0], fx[2] - fx[0]], [fy[1] - fy[0], fy[2] - fy[0]]]) / h
            step = np.linalg.solve(jac, np.array([fpx, fpy]) - f0)
            th = th + step
            if np.max(np.abs(step)) < 1e-14:
                break
        return float(th[0]), float(th[1])

    def field_to_icrf(self, thx, thy):
        """Field angles (radians) -> ICRF (ra, dec) in radians."""
        rob, dob = self._field.xyToradec(np.asarray(thx, float), np.asarray(thy, float), units="rad")
        return self.site.observed_to_icrf("R", rob, dob)

    def icrf_to_focal(self, ra_deg, dec_deg, max_radius_deg: float = 2.5):
        """ICRF (deg) -> DM focal-plane mm for many objects; NaN beyond ``max_radius_deg`` of the
        boresight."""
        ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
        rc, dc = math.radians(self.ra_deg), math.radians(self.dec_deg)
        cos_sep = np.sin(dc) * np.sin(dec) + np.cos(dc) * np.cos(dec) * np.cos(ra - rc)
        near = cos_sep > math.cos(math.radians(max_radius_deg))
        fx = np.full(ra.shape, np.nan)
        fy = np.full(ra.shape, np.nan)
        if near.any():
            _, _, _, dob, rob = self.site.icrf_to_observed(ra[near], dec[near])
            thx, thy = self._field.radecToxy(rob, dob, units="rad")
            x, y = self.field_to_focal(thx, thy)
            fx[near], fy[near] = x, y
        return fx, fy

    # --- per sensor ------------------------------------------------------------------------------
    def field_samples(self, sensor: Sensor) -> tuple[np.ndarray, np.ndarray]:
        """imSim's hexapolar grid of field angles (radians) around the sensor's centre: 97 points
        out to 0.16 deg, covering a 4k x 4k sensor's corners."""
        thx0, thy0 = self.focal_to_field(*sensor.centre_mm)
        rs, ths = [0.0], [0.0]
        for r in np.linspace(0.01, _HEX_MAX_DEG, _HEX_RINGS):
            nth = (int(r / _HEX_MAX_DEG * 6 * _HEX_RINGS) // 6 + 1) * 6
            rs += [r] * nth
            ths += [i / nth * 2 * np.pi for i in range(nth)]
        rs, ths = np.radians(np.array(rs)), np.array(ths)
        return thx0 + rs * np.cos(ths), thy0 + rs * np.sin(ths)

    def sensor_wcs(self, sensor: Sensor):
        """The sensor's fitted TAN-SIP as a ``galsim.GSFitsWCS`` (DM pixel coordinates)."""
        import galsim

        thx, thy = self.field_samples(sensor)
        fx, fy = self.field_to_focal(thx, thy)
        x, y = sensor.focal_plane_to_pixel(fx, fy)
        rc, dc = self.field_to_icrf(thx, thy)
        ok = np.isfinite(x) & np.isfinite(y)
        return galsim.FittedSIPWCS(x[ok], y[ok], rc[ok], dc[ok], order=self.settings.sip_order)

    def icrf_to_pixel(self, sensor: Sensor, ra_deg, dec_deg):
        """The exact chain (no fit) ICRF (deg) -> the sensor's DM pixels."""
        fx, fy = self.icrf_to_focal(ra_deg, dec_deg)
        return sensor.focal_plane_to_pixel(fx, fy)


@functools.lru_cache(maxsize=4)
def visit_wcs(ra_deg: float, dec_deg: float, mjd_tai: float, band: str, rottelpos_deg: float,
              settings: WcsSettings = WcsSettings()) -> VisitWcs:
    """:class:`VisitWcs`, built once per visit and settings in a process."""
    return VisitWcs(ra_deg, dec_deg, mjd_tai, band, rottelpos_deg, settings)


def for_visit(visit, options: dict | None = None) -> VisitWcs:
    """The :class:`VisitWcs` of a :class:`dc2flow.catalog.Visit` with the physics options' ``camera`` settings."""
    return visit_wcs(float(visit.ra_deg), float(visit.dec_deg), float(visit.mjd), visit.band,
                     float(visit.rottelpos_deg), WcsSettings.from_options(options))


# --- header cards ---------------------------------------------------------------------------------

def header_cards(gsfits) -> dict:
    """The FITS cards of a fitted TAN-SIP ``GSFitsWCS`` (CTYPE, CRPIX, CD, CRVAL, A/B/AP/BP)."""
    import galsim

    header = galsim.FitsHeader()
    gsfits.writeToFitsHeader(header, galsim.BoundsI(1, 1, 1, 1))
    keep = {}
    for key in header.keys():
        if key in ("CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "CUNIT1", "CUNIT2",
                   "CRVAL1", "CRVAL2") or key.startswith(WCS_KEYS_PREFIXES) or key.endswith("_ORDER"):
            value = header[key]
            keep[key] = float(value) if isinstance(value, (float, np.floating)) else value
    return keep


def gsfits_from_cards(cards: dict):
    """A ``galsim.GSFitsWCS`` from :func:`header_cards` output (what the render and readers use)."""
    import galsim

    return galsim.GSFitsWCS(header=galsim.FitsHeader(dict(cards)))


def local_jacobians(gsfits, x, y) -> np.ndarray:
    """The WCS's local Jacobian (arcsec per pixel; GalSim's ``dudx, dudy, dvdx, dvdy``, +u west,
    +v north) at many pixel positions at once: GalSim's own central differences of 1 px
    (``CelestialWCS._local``), vectorised; shape (n, 4)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    xs = np.concatenate([x + 1, x - 1, x, x])
    ys = np.concatenate([y, y, y + 1, y - 1])
    ra, dec = gsfits.xyToradec(np.concatenate([x, xs]), np.concatenate([y, ys]), units="rad")
    ra0, dec0 = ra[:n], dec[:n]
    ra = ra[n:].reshape(4, n)
    dec = dec[n:].reshape(4, n)
    ra = np.where(ra < ra0 - np.pi, ra + 2 * np.pi, np.where(ra > ra0 + np.pi, ra - 2 * np.pi, ra))
    cosdec = np.cos(dec0)
    factor = 180.0 / np.pi * 3600.0
    return np.stack([-0.5 * (ra[0] - ra[1]) * cosdec, -0.5 * (ra[2] - ra[3]) * cosdec,
                     0.5 * (dec[0] - dec[1]), 0.5 * (dec[2] - dec[3])], axis=1) * factor


def write_visit_cards(path: str | os.PathLike, cards: dict, meta: dict) -> None:
    """Write a visit's sensor WCS cards (JSON, atomically)."""
    import json

    from .io import atomic_output

    with atomic_output(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump({"meta": meta, "sensors": cards}, fh, indent=0, sort_keys=True)


def read_visit_cards(path: str | os.PathLike) -> dict:
    """Read :func:`write_visit_cards` output: ``{"meta": ..., "sensors": {det_name: cards}}``.

    Raises:
        WcsError: the file is missing or malformed.
    """
    import json

    try:
        with open(path) as fh:
            doc = json.load(fh)
        doc["sensors"], doc["meta"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WcsError(path, "cannot read the visit's WCS file", str(e), "rerun the partition step") from None
    return doc
