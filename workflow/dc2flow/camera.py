"""The LSSTCam focal plane, from Rubin's own camera description (lsst/obs_lsst).

The 189 science sensors, their vendors, sizes, focal-plane positions, yaws, reference pixels and
amplifiers are facts derived from obs_lsst's ``policy/`` files by ``scripts/derive_camera_table.py``
(rules in :mod:`dc2flow.camera_description`) and packaged as ``dc2flow/data/lsstcam_*.csv``.
Config ``camera.description`` may name another policy folder of the same layout (:func:`load_camera`);
the stages that use sensor geometry (partition, estimate, render, forecast, mosaic) take the run's
camera from it (:func:`camera_for` of their options; the mosaic's ``--camera-description``), while
:data:`SENSORS`, :func:`get_sensor` and :data:`DET_NAMES` stay LSSTCam's, for names, detector
numbers and their order (a description is expected to keep them).

Conventions are DM's (``lsst.afw.cameraGeom``):

- focal plane (``FOCAL_PLANE``): mm, LSE-349's data visualisation coordinate system, x along
  raft columns (``Rij``: j), y along raft rows (i), so R22_S11 is at (0, 0) and R01_S00 at
  (-169.25, -296.25);
- pixels (``PIXELS``): 0-based pixel centres, x along the serial register; a sensor's reference
  pixel ``refpos`` (2047.5, 2001.5 on e2v: its centre; 2036.5, 2000.5 on ITL: one pixel beyond
  its centre 2035.5, 1999.5) sits at its focal-plane ``offset`` (``x_mm``, ``y_mm``), and ``fp = offset + R(yaw) (pixel - refpos) * 0.01 mm``.

eimages follow imSim: their GalSim/FITS image coordinates *are* DM's 0-based pixel coordinates
numerically (imSim writes CRPIX 2047.5 at R22_S11's centre into a 1-based image), so a strict FITS
reader is one pixel off Rubin's geometry; raw amplifier files keep Rubin's convention.

Detector numbers follow LSSTCam (rafts' ``id0`` + slot): R01_S00 = 0, R22_S11 = 94, R43_S22 = 188.
``dc2flow focal-plane`` prints the table.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .errors import CameraDescriptionError, CameraError

N_SCIENCE_SENSORS = 189
PIXEL_SIZE_MM = 0.01


@dataclass(frozen=True)
class Sensor:
    """One science sensor.

    Parameters:
        det_name:  ``R{ij}_S{kl}``.
        det_num:   detector number, 0-188 in LSSTCam order.
        vendor:    ``ITL`` or ``E2V``.
        nx, ny:    size in pixels.
        x_mm, y_mm: focal-plane position of the reference pixel ``refpos``, mm (DM's ``offset``;
                   the centre on e2v, one pixel from it on ITL: see :attr:`centre_mm`).
        yaw_deg:   rotation of the pixel axes from the focal-plane axes, degrees [default: 0.0].
        refpos_x, refpos_y: the reference pixel, DM 0-based [default: None, the centre].
        serial:    the CCD's serial number [default: ""].
        pixel_size_mm: [default: 0.01].
    """

    det_name: str
    det_num: int
    vendor: str
    nx: int
    ny: int
    x_mm: float
    y_mm: float
    yaw_deg: float = 0.0
    refpos_x: float | None = None
    refpos_y: float | None = None
    serial: str = ""
    pixel_size_mm: float = PIXEL_SIZE_MM

    @property
    def raft(self) -> str:
        return self.det_name[:3]

    @property
    def refpos(self) -> tuple[float, float]:
        rx = (self.nx - 1) / 2.0 if self.refpos_x is None else self.refpos_x
        ry = (self.ny - 1) / 2.0 if self.refpos_y is None else self.refpos_y
        return rx, ry

    @property
    def centre_pixel(self) -> tuple[float, float]:
        """The centre of the pixel grid in DM pixel coordinates (= eimage image coordinates,
        imSim's convention).  It is ``refpos`` on e2v sensors; ITL's ``refpos`` is one pixel
        beyond it in x and y (obs_lsst's description)."""
        return (self.nx - 1) / 2.0, (self.ny - 1) / 2.0

    @property
    def centre_mm(self) -> tuple[float, float]:
        """The focal-plane position of the centre of the pixel grid (DM's ``getCenter(FOCAL_PLANE)``)."""
        x, y = self.pixel_to_focal_plane(*self.centre_pixel)
        return float(x), float(y)

    def _rotation(self) -> tuple[float, float]:
        t = math.radians(self.yaw_deg)
        return math.cos(t), math.sin(t)

    def pixel_to_focal_plane(self, x, y):
        """DM pixel coordinates -> focal-plane mm (arrays welcome)."""
        c, s = self._rotation()
        rx, ry = self.refpos
        dx = (np.asarray(x, dtype=float) - rx) * self.pixel_size_mm
        dy = (np.asarray(y, dtype=float) - ry) * self.pixel_size_mm
        return self.x_mm + c * dx - s * dy, self.y_mm + s * dx + c * dy

    def focal_plane_to_pixel(self, x_mm, y_mm):
        """Focal-plane mm -> DM pixel coordinates (arrays welcome)."""
        c, s = self._rotation()
        rx, ry = self.refpos
        dx = np.asarray(x_mm, dtype=float) - self.x_mm
        dy = np.asarray(y_mm, dtype=float) - self.y_mm
        return rx + (c * dx + s * dy) / self.pixel_size_mm, ry + (-s * dx + c * dy) / self.pixel_size_mm

    def corners_mm(self) -> np.ndarray:
        """Focal-plane (x, y) of the outer corners of pixels (0,0), (nx-1,0), (nx-1,ny-1), (0,ny-1)."""
        xs = np.array([-0.5, self.nx - 0.5, self.nx - 0.5, -0.5])
        ys = np.array([-0.5, -0.5, self.ny - 0.5, self.ny - 0.5])
        return np.stack(self.pixel_to_focal_plane(xs, ys), axis=1)

    def half_extent_mm(self) -> tuple[float, float]:
        """Half the focal-plane extent of the sensor's bounding box along x and y (yaw included)."""
        corners = self.corners_mm()
        return (float(np.ptp(corners[:, 0])) / 2.0, float(np.ptp(corners[:, 1])) / 2.0)


@dataclass(frozen=True)
class Amplifier:
    """One amplifier (segment) of a sensor: HDU of the raw file, gain (e-/ADU), read noise (e-),
    saturation (e-), flips and position ``(ix, iy)`` in the 8 x 2 grid (obs_lsst's facts)."""

    det_name: str
    amp: str
    hdu: int
    gain: float
    read_noise: float
    saturation: float
    flip_x: bool
    flip_y: bool
    ix: int
    iy: int


@dataclass(frozen=True)
class Camera:
    """A camera: its science sensors, amplifiers and the optical facts of its description.

    Parameters:
        name:        the camera's name.
        sensors:     by detector number.
        amplifiers:  det_name -> its amplifiers in HDU order.
        plate_scale_arcsec_per_mm: nominal plate scale.
        field_angle_coeffs: radial FocalPlane -> FieldAngle polynomial (see :meth:`field_angle_arcsec`).
        amplifier_layout: per vendor, the raw amplifier geometry.
        source:      where the description came from.
    """

    name: str
    sensors: tuple[Sensor, ...]
    amplifiers: dict
    plate_scale_arcsec_per_mm: float
    field_angle_coeffs: tuple[float, ...]
    amplifier_layout: dict
    source: str

    @functools.cached_property
    def _by_name(self) -> dict[str, Sensor]:
        return {s.det_name: s for s in self.sensors}

    @property
    def det_names(self) -> tuple[str, ...]:
        return tuple(s.det_name for s in self.sensors)

    @property
    def pixel_scale_arcsec(self) -> float:
        """Nominal pixel scale (plate scale x pixel size): 0.200059 arcsec for LSSTCam."""
        return self.plate_scale_arcsec_per_mm * PIXEL_SIZE_MM

    def sensor(self, key: str | int) -> Sensor:
        """The sensor with this name (``R22_S11``) or detector number (94).

        Raises:
            CameraError: for an unknown name or number.
        """
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            for s in self.sensors:
                if s.det_num == int(key):
                    return s
        elif isinstance(key, str) and key in self._by_name:
            return self._by_name[key]
        raise CameraError(key, "a name R{ij}_S{kl} such as R22_S11 (rafts R01-R43 without corners) "
                               "or a detector number 0-188")

    def field_angle_arcsec(self, r_mm):
        """The radial polynomial of the description: field angle (arcsec) at focal-plane radius r (mm)."""
        r = np.asarray(r_mm, dtype=float)
        return self.plate_scale_arcsec_per_mm * sum(c * r**i for i, c in enumerate(self.field_angle_coeffs))


def _read_csv(text: str, where: str) -> list[dict]:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise CameraDescriptionError(where, "empty table", fix="rerun scripts/derive_camera_table.py")
    return rows


def _camera_from_tables(sensors_csv: str, amps_csv: str, camera_json: str, source: str) -> Camera:
    try:
        sensors = tuple(
            Sensor(det_name=r["det_name"], det_num=int(r["det_num"]), vendor=r["vendor"], nx=int(r["nx"]),
                   ny=int(r["ny"]), x_mm=float(r["x_mm"]), y_mm=float(r["y_mm"]), yaw_deg=float(r["yaw_deg"]),
                   refpos_x=float(r["refpos_x"]), refpos_y=float(r["refpos_y"]), serial=r["serial"],
                   pixel_size_mm=float(r["pixel_size_mm"]))
            for r in _read_csv(sensors_csv, f"{source} sensors"))
        amps: dict[str, list[Amplifier]] = {}
        for r in _read_csv(amps_csv, f"{source} amplifiers"):
            amps.setdefault(r["det_name"], []).append(Amplifier(
                det_name=r["det_name"], amp=r["amp"], hdu=int(r["hdu"]), gain=float(r["gain"]),
                read_noise=float(r["read_noise"]), saturation=float(r["saturation"]), flip_x=r["flip_x"] == "1",
                flip_y=r["flip_y"] == "1", ix=int(r["ix"]), iy=int(r["iy"])))
        meta = json.loads(camera_json)
    except (KeyError, ValueError) as e:
        raise CameraDescriptionError(source, "malformed camera table", str(e),
                                     "rerun scripts/derive_camera_table.py") from None
    return Camera(name=meta["name"], sensors=tuple(sorted(sensors, key=lambda s: s.det_num)),
                  amplifiers={k: tuple(v) for k, v in amps.items()},
                  plate_scale_arcsec_per_mm=float(meta["plate_scale_arcsec_per_mm"]),
                  field_angle_coeffs=tuple(float(c) for c in meta["field_angle_coeffs"]),
                  amplifier_layout=meta.get("amplifier_layout", {}), source=source)


@functools.lru_cache(maxsize=8)
def load_camera(description: str | os.PathLike | None = None) -> Camera:
    """The camera: the packaged LSSTCam tables, or one derived from an obs_lsst-style policy folder.

    Parameters:
        description: a policy folder (``camera.description`` in config) [default: None, LSSTCam].

    Raises:
        CameraDescriptionError: the description is missing or malformed.
    """
    if description is None:
        data = resources.files("dc2flow") / "data"
        return _camera_from_tables((data / "lsstcam_sensors.csv").read_text(),
                                   (data / "lsstcam_amplifiers.csv").read_text(),
                                   (data / "lsstcam_camera.json").read_text(), "dc2flow/data/lsstcam_*")
    from .camera_description import derive

    desc = derive(description)
    return _camera_from_tables(desc.sensors_csv(), desc.amplifiers_csv(), desc.camera_json(), str(description))


def camera_for(options: dict | None) -> Camera:
    """The camera the physics options ask for (``camera.description``; None: LSSTCam)."""
    section = (options or {}).get("camera") or {}
    return load_camera(section.get("description"))


LSSTCAM: Camera = load_camera()
SENSORS: tuple[Sensor, ...] = LSSTCAM.sensors
DET_NAMES: tuple[str, ...] = LSSTCAM.det_names
PLATE_SCALE_ARCSEC_PER_MM = LSSTCAM.plate_scale_arcsec_per_mm
PIXEL_SCALE_ARCSEC = LSSTCAM.pixel_scale_arcsec
assert len(SENSORS) == N_SCIENCE_SENSORS


def get_sensor(key: str | int) -> Sensor:
    """The LSSTCam sensor with this name (``R22_S11``) or detector number (94).

    Raises:
        CameraError: for an unknown name or a number outside 0-188.
    """
    return LSSTCAM.sensor(key)


def focal_plane_csv(cam: Camera | None = None) -> str:
    """The focal-plane table as CSV text (``dc2flow focal-plane`` prints it)."""
    cam = cam or LSSTCAM
    rows = ["det_num,det_name,vendor,nx,ny,x_mm,y_mm,yaw_deg,refpos_x,refpos_y"]
    rows += [f"{s.det_num},{s.det_name},{s.vendor},{s.nx},{s.ny},{s.x_mm:.3f},{s.y_mm:.3f},{s.yaw_deg:g},"
             f"{s.refpos[0]:g},{s.refpos[1]:g}" for s in cam.sensors]
    return "\n".join(rows) + "\n"
