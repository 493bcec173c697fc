"""The LSSTCam focal plane without the LSST software stack.

The 189 science sensors are computed from public facts, not typed in: 21 rafts on a 5x5 grid
without its four corners, 3x3 sensors per raft, raft pitch 127 mm, sensor pitch 42.25 mm inside a
raft, 10 um pixels at 0.2 arcsec per pixel (20 arcsec per mm).  Raft ``R{i}{j}`` and slot
``S{k}{l}``: the first digit of each is the row (focal-plane y), the second the column (x), so the
sensor centre is::

    x_mm = (j - 2) * 127 + (l - 1) * 42.25
    y_mm = (i - 2) * 127 + (k - 1) * 42.25

Detector numbers follow LSSTCam order (rafts in name order, then slots in name order):
R01_S00 = 0, R22_S11 = 94, R43_S22 = 188.  ITL sensors (rafts R01 R02 R03 R10 R20 R41 R42 R43)
have 4072 x 4000 pixels, e2v sensors 4096 x 4004.

Each sensor's pixel axes are taken parallel to the focal-plane axes and there is no optical
distortion: the WCS is a pure gnomonic (TAN) projection about the boresight.  ``dc2flow
focal-plane`` prints the table.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .errors import CameraError

N_SCIENCE_SENSORS = 189
PIXEL_SIZE_MM = 0.01
PIXEL_SCALE_ARCSEC = 0.2
PLATE_SCALE_ARCSEC_PER_MM = PIXEL_SCALE_ARCSEC / PIXEL_SIZE_MM
RAFT_PITCH_MM = 127.0
SENSOR_PITCH_MM = 42.25
ITL_RAFTS = frozenset({"R01", "R02", "R03", "R10", "R20", "R41", "R42", "R43"})
SENSOR_SHAPE = {"ITL": (4072, 4000), "E2V": (4096, 4004)}  # (nx, ny) pixels
_CORNER_RAFTS = frozenset({(0, 0), (0, 4), (4, 0), (4, 4)})


@dataclass(frozen=True)
class Sensor:
    """One LSSTCam science sensor.

    Parameters:
        det_name:  ``R{ij}_S{kl}``.
        det_num:   detector number, 0-188 in LSSTCam order.
        vendor:    ``ITL`` or ``E2V``.
        nx, ny:    size in pixels.
        x_mm, y_mm: centre in the focal plane, mm from the boresight.
    """

    det_name: str
    det_num: int
    vendor: str
    nx: int
    ny: int
    x_mm: float
    y_mm: float

    @property
    def raft(self) -> str:
        return self.det_name[:3]

    @property
    def centre_pixel(self) -> tuple[float, float]:
        """Centre in 1-based FITS/GalSim pixel coordinates."""
        return (self.nx + 1) / 2.0, (self.ny + 1) / 2.0

    def pixel_to_focal_plane(self, x, y):
        """1-based pixel coordinates -> focal-plane mm (arrays welcome)."""
        cx, cy = self.centre_pixel
        return (self.x_mm + (np.asarray(x) - cx) * PIXEL_SIZE_MM,
                self.y_mm + (np.asarray(y) - cy) * PIXEL_SIZE_MM)

    def focal_plane_to_pixel(self, x_mm, y_mm):
        """Focal-plane mm -> 1-based pixel coordinates (arrays welcome)."""
        cx, cy = self.centre_pixel
        return (cx + (np.asarray(x_mm) - self.x_mm) / PIXEL_SIZE_MM,
                cy + (np.asarray(y_mm) - self.y_mm) / PIXEL_SIZE_MM)


def _build_sensors() -> tuple[Sensor, ...]:
    sensors = []
    for i in range(5):
        for j in range(5):
            if (i, j) in _CORNER_RAFTS:
                continue
            raft = f"R{i}{j}"
            vendor = "ITL" if raft in ITL_RAFTS else "E2V"
            nx, ny = SENSOR_SHAPE[vendor]
            for k in range(3):
                for l in range(3):
                    sensors.append(Sensor(
                        det_name=f"{raft}_S{k}{l}", det_num=len(sensors), vendor=vendor, nx=nx, ny=ny,
                        x_mm=(j - 2) * RAFT_PITCH_MM + (l - 1) * SENSOR_PITCH_MM,
                        y_mm=(i - 2) * RAFT_PITCH_MM + (k - 1) * SENSOR_PITCH_MM))
    assert len(sensors) == N_SCIENCE_SENSORS
    return tuple(sensors)


SENSORS: tuple[Sensor, ...] = _build_sensors()
DET_NAMES: tuple[str, ...] = tuple(s.det_name for s in SENSORS)
_BY_NAME = {s.det_name: s for s in SENSORS}


def get_sensor(key: str | int) -> Sensor:
    """The sensor with this name (``R22_S11``) or detector number (94).

    Raises:
        CameraError: for an unknown name or a number outside 0-188.
    """
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if 0 <= int(key) < N_SCIENCE_SENSORS:
            return SENSORS[int(key)]
    elif isinstance(key, str) and key in _BY_NAME:
        return _BY_NAME[key]
    raise CameraError(key, "a name R{ij}_S{kl} such as R22_S11 (rafts R01-R43 without corners) "
                           "or a detector number 0-188")


def focal_plane_csv() -> str:
    """The focal-plane table as CSV text (``dc2flow focal-plane`` prints it)."""
    rows = ["det_num,det_name,vendor,nx,ny,x_mm,y_mm"]
    rows += [f"{s.det_num},{s.det_name},{s.vendor},{s.nx},{s.ny},{s.x_mm:.2f},{s.y_mm:.2f}" for s in SENSORS]
    return "\n".join(rows) + "\n"


# --- projection: sky <-> focal plane (gnomonic about the boresight) -----------------------------

def _cd_matrix_deg(rotskypos_deg: float) -> np.ndarray:
    """CD matrix (deg per pixel) for a sensor whose pixel axes are parallel to the focal plane.

    ``rotskypos`` is the position angle of the focal-plane +y axis, measured from North through
    East.  At rotskypos = 0 North is +y and East is -x (the usual sky parity).
    """
    s = PIXEL_SCALE_ARCSEC / 3600.0
    t = math.radians(rotskypos_deg)
    return s * np.array([[-math.cos(t), math.sin(t)], [math.sin(t), math.cos(t)]])


def sky_to_focal_plane(ra_deg, dec_deg, ra0_deg: float, dec0_deg: float, rotskypos_deg: float):
    """Gnomonic projection of sky positions to focal-plane mm; returns (x_mm, y_mm, in_front).

    ``in_front`` is False for points 90 degrees or more from the boresight, whose projection is
    meaningless (their x, y are set to NaN).
    """
    ra = np.radians(np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    ra0, dec0 = math.radians(ra0_deg), math.radians(dec0_deg)
    cos_c = math.sin(dec0) * np.sin(dec) + math.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    in_front = cos_c > 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.cos(dec) * np.sin(ra - ra0) / cos_c            # towards East, radians
        eta = (math.cos(dec0) * np.sin(dec) - math.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cos_c
    world = np.degrees(np.stack([xi, eta]))                       # intermediate world coords, deg
    pix = np.linalg.solve(_cd_matrix_deg(rotskypos_deg), world.reshape(2, -1)).reshape(world.shape)
    x_mm = np.where(in_front, pix[0] * PIXEL_SIZE_MM, np.nan)
    y_mm = np.where(in_front, pix[1] * PIXEL_SIZE_MM, np.nan)
    return x_mm, y_mm, in_front


def wcs_header_cards(sensor: Sensor, ra0_deg: float, dec0_deg: float, rotskypos_deg: float) -> list[tuple]:
    """FITS WCS cards (TAN about the boresight) for one sensor, as (key, value, comment) tuples.

    CRPIX is the boresight's position in the sensor's 1-based pixel frame, so every sensor of a
    visit shares CRVAL and the CD matrix and differs only in CRPIX.
    """
    cx, cy = sensor.centre_pixel
    crpix1 = cx - sensor.x_mm / PIXEL_SIZE_MM
    crpix2 = cy - sensor.y_mm / PIXEL_SIZE_MM
    cd = _cd_matrix_deg(rotskypos_deg)
    return [
        ("WCSAXES", 2, "number of WCS axes"),
        ("CTYPE1", "RA---TAN", "gnomonic projection, no distortion"),
        ("CTYPE2", "DEC--TAN", "gnomonic projection, no distortion"),
        ("CUNIT1", "deg", ""), ("CUNIT2", "deg", ""),
        ("CRVAL1", float(ra0_deg % 360.0), "[deg] boresight RA"),
        ("CRVAL2", float(dec0_deg), "[deg] boresight Dec"),
        ("CRPIX1", float(crpix1), "boresight x in this sensor's pixels"),
        ("CRPIX2", float(crpix2), "boresight y in this sensor's pixels"),
        ("CD1_1", float(cd[0, 0]), ""), ("CD1_2", float(cd[0, 1]), ""),
        ("CD2_1", float(cd[1, 0]), ""), ("CD2_2", float(cd[1, 1]), ""),
        ("RADESYS", "ICRS", ""),
    ]


@functools.lru_cache(maxsize=256)
def galsim_wcs(sensor: Sensor, ra0_deg: float, dec0_deg: float, rotskypos_deg: float):
    """The same WCS as :func:`wcs_header_cards`, as a ``galsim.GSFitsWCS`` (built from those cards)."""
    import galsim  # heavy: only the render stage needs it

    header = {k: v for k, v, _ in wcs_header_cards(sensor, ra0_deg, dec0_deg, rotskypos_deg)}
    header.update(NAXIS=2, NAXIS1=sensor.nx, NAXIS2=sensor.ny)
    return galsim.GSFitsWCS(header=galsim.FitsHeader(header))
