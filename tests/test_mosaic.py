"""The mosaic places each sensor where the run's camera puts it (config camera.description), from
small synthetic eimages (a marker on zeros): no render needed."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from conftest import PERTURBED_DET, PERTURBED_OFFSET_MM
from dc2flow import camera
from dc2flow.cli import main
from dc2flow.errors import RenderError
from dc2flow.mosaic import mosaic, mosaic_canvas, mosaic_size

BIN = 32                       # 0.32 mm a mosaic pixel
MARKER = (1000, 3000)          # DM 0-based pixel (x, y) of the marker's lower-left corner
MARKER_SIDE = 2 * BIN          # so that whole binned pixels are bright whatever the grid


def _eimage(path, det_name, shape):
    """A zero image of ``shape`` (ny, nx) with a bright square marker, headed like dc2flow's eimages."""
    data = np.zeros(shape, dtype=np.float32)
    x, y = MARKER
    data[y:y + MARKER_SIDE, x:x + MARKER_SIDE] = 1000.0
    header = fits.Header({"DET_NAME": det_name, "OBSID": 7, "FILTER": "r", "CD1_1": -5.6e-5, "CD1_2": 0.0,
                          "CD2_1": 0.0, "CD2_2": 5.6e-5})
    fits.PrimaryHDU(data, header).writeto(path)
    return path


@pytest.fixture(scope="module")
def perturbed(perturbed_policy, tmp_path_factory):
    cam = camera.load_camera(str(perturbed_policy))
    s = cam.sensor(PERTURBED_DET)
    image = _eimage(tmp_path_factory.mktemp("mosaic") / "eimage.fits", PERTURBED_DET, (s.ny, s.nx))
    return cam, image


def _marker_cell(canvas):
    """(column, row from the bottom) of the centre of the bright binned pixels."""
    rows, cols = np.nonzero(np.nan_to_num(canvas) > 500.0)
    assert rows.size >= 1
    return cols.mean() + 0.5, rows.mean() + 0.5


def test_mosaic_places_the_perturbed_sensor_where_its_description_puts_it(perturbed, tmp_path):
    cam, image = perturbed
    canvas, _, placed = mosaic_canvas([image], BIN, cam)
    assert placed == [PERTURBED_DET] and canvas.shape[::-1] == mosaic_size(BIN, cam)
    # the focal plane's lower-left corner, from the description's outer sensors (R22_S11 is not one)
    x0 = min(s.corners_mm()[:, 0].min() for s in cam.sensors)
    y0 = min(s.corners_mm()[:, 1].min() for s in cam.sensors)
    # e2v's reference pixel is its centre, R22's and S11's nominal offsets are 0: its centre is the perturbation
    cx, cy = PERTURBED_OFFSET_MM
    s = cam.sensor(PERTURBED_DET)
    assert s.centre_mm == pytest.approx((cx, cy))
    # the image's own pixels land where the sensor is: its lower-left edge, centred on (cx, cy)
    rows, cols = np.nonzero(np.isfinite(canvas))
    assert cols.min() == round((cx - s.nx * 0.005 - x0) / (0.01 * BIN))
    assert rows.min() == round((cy - s.ny * 0.005 - y0) / (0.01 * BIN))
    # the marker: where the perturbed description puts its pixel, 5 and 3 mosaic pixels from LSSTCam's place
    mx, my = MARKER[0] + MARKER_SIDE / 2 - 0.5, MARKER[1] + MARKER_SIDE / 2 - 0.5
    col, row = _marker_cell(canvas)
    want = (np.array(s.pixel_to_focal_plane(mx, my)) - (x0, y0)) / (0.01 * BIN)
    nominal = (np.array(camera.get_sensor(PERTURBED_DET).pixel_to_focal_plane(mx, my)) - (x0, y0)) / (0.01 * BIN)
    assert abs(col - want[0]) <= 0.6 and abs(row - want[1]) <= 0.6
    assert abs(col - nominal[0]) >= 4.0 and abs(row - nominal[1]) >= 2.0
    # the same image with LSSTCam's geometry sits at the nominal place: the camera decides
    col, row = _marker_cell(mosaic_canvas([image], BIN)[0])
    assert abs(col - nominal[0]) <= 0.6 and abs(row - nominal[1]) <= 0.6


def test_mosaic_png_and_command_line_take_the_description(perturbed, perturbed_policy, tmp_path):
    cam, image = perturbed
    out = tmp_path / "mosaic.png"
    summary = mosaic([image], out, BIN, "linear", cam)
    png = np.asarray(Image.open(out))
    assert png.shape[:2][::-1] == tuple(summary["size"]) == mosaic_size(BIN, cam)
    col, row = _marker_cell(mosaic_canvas([image], BIN, cam)[0])
    assert tuple(png[png.shape[0] - int(row) - 1, int(col)]) == (255, 255, 255)   # PNG rows run top-down
    again = tmp_path / "cli.png"
    assert main(["mosaic", str(image), "--out", str(again), "--bin", str(BIN), "--stretch", "linear",
                 "--camera-description", str(perturbed_policy)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_image_of_another_size_than_the_description_s_is_refused(small_e2v_policy, perturbed, tmp_path):
    _, image = perturbed          # a full-size e2v image; this description's e2v sensors are 2048 x 2002
    with pytest.raises(RenderError, match=r"image shape \(4004, 4096\) is not R22_S11's \(2002, 2048\) in .*small_e2v"):
        mosaic_canvas([image], BIN, camera.load_camera(str(small_e2v_policy)))
