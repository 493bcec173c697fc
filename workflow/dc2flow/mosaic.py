"""Quick-look pictures of rendered sensors: the focal-plane mosaic of a visit and one sensor's cutout.

Both go through :mod:`dc2flow.display` (binning, the stretches, PNG encoding), so the mosaic, a
cutout and the eyeball viewer show the same thing for the same stretch.  Sensors are placed by the run's
camera (:mod:`dc2flow.camera`: config ``camera.description``, else the packaged LSSTCam), given as
a :class:`dc2flow.camera.Camera`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Sequence

import numpy as np

from . import camera, display
from .errors import ConfigError, RenderError
from .io import atomic_output

log = logging.getLogger(__name__)


def _bbox_mm(s: camera.Sensor) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1): the sensor's outer pixel edges in the focal plane (Rubin's geometry, refpos
    and yaw included; ITL's reference pixel is one pixel off its centre)."""
    corners = s.corners_mm()
    return (float(corners[:, 0].min()), float(corners[:, 1].min()), float(corners[:, 0].max()),
            float(corners[:, 1].max()))


def _fp_extent_mm(cam: camera.Camera) -> tuple[float, float, float, float]:
    boxes = [_bbox_mm(s) for s in cam.sensors]
    return min(b[0] for b in boxes), max(b[2] for b in boxes), min(b[1] for b in boxes), max(b[3] for b in boxes)


def _lower_left_mm(s: camera.Sensor) -> tuple[float, float]:
    """Where a sensor's binned image is placed: its pixel grid's outer lower-left edge with the grid
    centred on the sensor's centre (:attr:`dc2flow.camera.Sensor.centre_mm`), unrotated."""
    cx, cy = s.centre_mm
    return cx - s.nx * s.pixel_size_mm / 2.0, cy - s.ny * s.pixel_size_mm / 2.0


def mosaic_size(bin_factor: int, cam: camera.Camera | None = None) -> tuple[int, int]:
    """(width, height) of a focal-plane mosaic in PNG pixels: ``ceil(extent_mm / (0.01 mm x bin))``.

    The extent is the bounding box of all science sensors of ``cam`` [default: None, LSSTCam's 189:
    633.5 x 632.5 mm, so a mosaic is 3960 x 3954 pixels at bin 16], whatever sensors were rendered.
    """
    return _frame(cam or camera.LSSTCAM, bin_factor)[3:]


def focal_plane_to_mosaic(x_mm, y_mm, bin_factor: int, cam: camera.Camera | None = None):
    """Focal-plane mm -> (column, row) of a mosaic PNG of ``cam`` [default: None, LSSTCam] (row 0 at
    the top, +y of the focal plane up)."""
    return _to_mosaic(_frame(cam or camera.LSSTCAM, bin_factor), x_mm, y_mm)


def _frame(cam: camera.Camera, bin_factor: int) -> tuple[float, float, float, int, int]:
    """(x0, y0, step, width, height): the mosaic's lower-left focal-plane corner and pixel (mm), and its size."""
    x0, x1, y0, y1 = _fp_extent_mm(cam)
    step = camera.PIXEL_SIZE_MM * bin_factor
    return x0, y0, step, int(math.ceil((x1 - x0) / step)), int(math.ceil((y1 - y0) / step))


def _to_mosaic(frame, x_mm, y_mm):
    x0, y0, step, _, height = frame
    return (np.asarray(x_mm) - x0) / step, height - (np.asarray(y_mm) - y0) / step


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=max(8, int(size)))


def mosaic_canvas(images: Sequence[str | os.PathLike], bin_factor: int,
                  cam: camera.Camera | None = None) -> tuple[np.ndarray, list, list[str]]:
    """The mosaic's float pixels before the stretch (row 0 at the *bottom*, as in FITS; NaN where no
    sensor was given), with the images' headers and det_names; see :func:`mosaic` for the layout
    and ``cam``.
    """
    cam = cam or camera.LSSTCAM
    x0, y0, step, width, height = _frame(cam, bin_factor)
    canvas = np.full((height, width), np.nan, dtype=np.float32)   # FITS orientation: row 0 at the bottom
    headers, placed = [], []
    for path in images:
        pixels, header = display.read_image(path)
        sensor = cam.sensor(str(header.get("DET_NAME", "")))
        if pixels.shape != (sensor.ny, sensor.nx):
            raise RenderError(str(path), f"image shape {pixels.shape} is not {sensor.det_name}'s "
                              f"({sensor.ny}, {sensor.nx}) in {cam.source}",
                              "render with the same camera.description as the mosaic's (or rerun render_sensor)")
        binned = display.bin_image(pixels, bin_factor)
        bx0, by0 = _lower_left_mm(sensor)
        c0 = int(round((bx0 - x0) / step))
        r0 = int(round((by0 - y0) / step))
        h, w = binned.shape
        h, w = min(h, height - r0), min(w, width - c0)
        canvas[r0:r0 + h, c0:c0 + w] = binned[:h, :w]
        headers.append(header)
        placed.append(sensor.det_name)
    return canvas, headers, placed


def mosaic(images: Sequence[str | os.PathLike], out_png: str | os.PathLike, bin_factor: int = 16,
           stretch: str = "zscale", cam: camera.Camera | None = None) -> dict:
    """A focal-plane mosaic of one visit's eimages: every sensor in its place, one shared stretch.

    Layout: the focal plane seen from the sky side with +x to the right and +y up (as
    :mod:`dc2flow.camera` defines it); each image is binned by ``bin_factor``
    (:func:`dc2flow.display.bin_image`) and placed where ``cam``, the run's camera, puts the sensor:
    its pixel grid centred on the sensor's centre (:attr:`dc2flow.camera.Sensor.centre_mm`, from its
    offset, reference pixel and yaw), rounded to a whole mosaic pixel.  A yaw is not drawn: the
    pixels are not rotated (LSSTCam's science sensors have none; a yaw of 0.02 deg moves a corner
    0.01 mm, a 16th of a mosaic pixel at bin 16).  Sensors not given are left black.  The outline
    of every sensor's bounding box (grey, yaw included) and of the 21 rafts (yellow) are drawn, with
    slot names (``S11``, lower left) and raft names (``R22``, upper left); the empty top-left corner
    holds the visit, band, stretch and North/East arrows from the first image's WCS.  Size:
    :func:`mosaic_size`.

    Parameters:
        images:      eimages of one visit (any subset of sensors), rendered with ``cam``.
        out_png:     the PNG (RGB, no time stamp: the same inputs give the same bytes).
        bin_factor:  binning factor. [default: 16]
        stretch:     one of :data:`dc2flow.display.STRETCHES`, shared by all sensors. [default: zscale]
        cam:         the run's camera (:func:`dc2flow.camera.camera_for` of its options, or
                     :func:`dc2flow.camera.load_camera` of ``camera.description``) [default: None, LSSTCam].

    Returns:
        a summary: size, sensors placed, stretch limits.

    Raises:
        RenderError: an image cannot be read or does not match its ``DET_NAME``'s size in ``cam``.
        ConfigError: a bad bin factor or stretch.
    """
    from PIL import Image, ImageDraw

    if stretch not in display.STRETCHES:
        raise ConfigError("validation.stretch", stretch, "unknown stretch", list(display.STRETCHES))
    cam = cam or camera.LSSTCAM
    canvas, headers, placed = mosaic_canvas(images, bin_factor, cam)
    height, width = canvas.shape
    limits = display.stretch_limits(canvas, stretch)
    grey = display.to_grey(canvas, stretch, limits)            # flipped: row 0 at the top
    img = Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))
    draw = ImageDraw.Draw(img)
    sensor_px = 4096 / bin_factor
    frame = _frame(cam, bin_factor)
    boxes = {s.det_name: _bbox_mm(s) for s in cam.sensors}

    def box(xa, ya, xb, yb):
        (ca, cb), (ra, rb) = _to_mosaic(frame, [xa, xb], [ya, yb])
        return [float(ca), float(rb), float(cb), float(ra)]     # PIL: left, top, right, bottom

    small, large = _font(sensor_px / 9), _font(sensor_px / 5)
    rafts = {}
    for s in cam.sensors:
        bx0, by0, bx1, by1 = boxes[s.det_name]
        draw.rectangle(box(bx0, by0, bx1, by1), outline=(110, 110, 110))
        c, r = _to_mosaic(frame, bx0, by0)     # lower-left corner
        draw.text((float(c) + sensor_px / 25, float(r) - sensor_px / 25), s.det_name[4:], fill=(80, 200, 255),
                  font=small, anchor="ld")
        rafts.setdefault(s.raft, []).append(boxes[s.det_name])
    for raft, members in rafts.items():
        xa = min(b[0] for b in members)
        xb = max(b[2] for b in members)
        ya = min(b[1] for b in members)
        yb = max(b[3] for b in members)
        b = box(xa, ya, xb, yb)
        draw.rectangle(b, outline=(255, 210, 0), width=max(1, int(sensor_px / 100)))
        draw.text((b[0] + sensor_px / 20, b[1] + sensor_px / 30), raft, fill=(255, 210, 0), font=large)
    # legend and compass in the empty top-left corner (raft R40's place)
    margin = sensor_px / 6
    visit = headers[0].get("OBSID", "?") if headers else "?"
    if headers and headers[0].get("SNAP"):   # snap 1, 2, ... of the visit (images before the card: snap 0)
        visit = f"{visit} snap {headers[0]['SNAP']}"
    band = headers[0].get("FILTER", "?") if headers else "?"
    draw.multiline_text((margin, margin), f"visit {visit}  band {band}\n{len(placed)} sensors, bin {bin_factor}\n"
                        f"{stretch} {limits[0]:.0f}..{limits[1]:.0f} e-", fill=(230, 230, 230), font=large)
    if headers:
        _compass(draw, headers[0], (margin + 2.2 * sensor_px, margin + 1.6 * sensor_px), sensor_px, large)
    data = display.encode_png(np.asarray(img))
    with atomic_output(out_png) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    summary = {"size": [width, height], "sensors": placed, "limits": list(limits), "bin": bin_factor,
               "stretch": stretch}
    log.info("mosaic %s: %s", out_png, summary)
    return summary


def _compass(draw, header, centre, sensor_px: float, font) -> None:
    """North and East arrows from the header's CD matrix (focal-plane +y is up in the mosaic)."""
    cd = np.array([[header["CD1_1"], header["CD1_2"]], [header["CD2_1"], header["CD2_2"]]], dtype=float)
    length = 0.8 * sensor_px
    for label, world in (("N", (0.0, 1.0)), ("E", (1.0, 0.0))):   # (dRA cos dec, dDec)
        d = np.linalg.solve(cd, np.array(world))
        d = d / np.hypot(*d) * length
        tip = (centre[0] + d[0], centre[1] - d[1])                 # image rows grow downwards
        draw.line([centre, tip], fill=(0, 255, 120), width=max(1, int(sensor_px / 60)))
        draw.text((tip[0] + 0.15 * d[0], tip[1] - 0.15 * d[1]), label, fill=(0, 255, 120), font=font, anchor="mm")


def cutout(image: str | os.PathLike, out_png: str | os.PathLike, bin_factor: int = 4, stretch: str = "zscale",
           box: tuple[int, int, int, int] | None = None) -> tuple[int, int]:
    """A PNG of one sensor (or part of it), binned and stretched like the mosaic, north as in DS9.

    Parameters:
        image:       an eimage.
        out_png:     the PNG (grey, no time stamp).
        bin_factor:  binning factor. [default: 4]
        stretch:     one of :data:`dc2flow.display.STRETCHES`. [default: zscale]
        box:         ``(xmin, xmax, ymin, ymax)``, 1-based inclusive pixels; None: the whole image.

    Returns:
        (width, height) of the PNG.
    """
    pixels, _ = display.read_image(image)
    if box is not None:
        xmin, xmax, ymin, ymax = box
        ny, nx = pixels.shape
        if not (1 <= xmin <= xmax <= nx and 1 <= ymin <= ymax <= ny):
            raise ConfigError("--box", box, "outside the image", f"1 <= xmin <= xmax <= {nx}, 1 <= ymin <= ymax <= {ny}")
        pixels = pixels[ymin - 1:ymax, xmin - 1:xmax]
    grey = display.to_grey(display.bin_image(pixels, bin_factor), stretch)
    data = display.encode_png(grey)
    with atomic_output(out_png) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return grey.shape[1], grey.shape[0]


