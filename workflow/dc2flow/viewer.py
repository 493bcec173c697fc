"""The eyeball viewer: a small web page showing one sensor image at a time, for people to look at.

DC2 was validated "through many eyeballs" with a page that showed one sensor image at a time
with Skip and Submit-problem buttons.  ``dc2flow viewer OUTDIR`` serves the same over a campaign's
outputs (Flask):

- ``/``: a random image; ``/sensor?path=REL&stretch=S&overlay=0|1`` one chosen image, rendered to
  PNG on the fly by :mod:`dc2flow.display` (binned to about 1000 pixels across) with a switchable
  stretch (zscale, linear, asinh) and an overlay of the truth table's positions;
- Skip (another random image) and Submit problem (a category from ``registry.problem_categories``
  and a comment), stored in the registry's ``problems`` table; ``/problems`` lists them.

Safety: it binds 127.0.0.1 unless told otherwise, and only a loopback address unless
``allow_remote`` (every spelling of the unspecified address, ``0``, ``0x0``, ``::ffff:0.0.0.0``, is
always refused: :func:`allowed_hosts` resolves ``--host`` first); it serves only eimage files under the output
root (an absolute path, a ``..`` component or a symlink resolving outside the root is refused);
every form field is checked (400 on bad input), problem reports need the page's token and, when
the browser sends one, a same-origin ``Origin`` header (403 otherwise); nothing a request names is
ever executed.  Every request's ``Host`` header must name the server (:func:`allowed_hosts`; 403
otherwise): a page on another site whose DNS name is rebound to 127.0.0.1 sends its own name as
``Host``, so it can neither read the pages (and their token) nor pass the ``Origin`` check, which
compares with the ``Host`` the request carries.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import random
import re
import secrets
import socket
import stat
from pathlib import Path

import numpy as np

from .display import STRETCHES, bin_image, encode_png, stretch_limits, to_grey
from .errors import RegistryError
from .registry import IMAGE_RE, add_problem, connect, list_problems

MAX_PNG_PIXELS = 1000          # the PNG's longer side is at most about this many pixels
MAX_OVERLAY_OBJECTS = 3000     # brightest truth objects drawn in the overlay
REL_PATH_RE = re.compile(r"[0-9]{8}/eimage_[\w.-]+\.fits", re.ASCII)   # used with fullmatch
VISIT_RE = re.compile(r"[0-9]{1,8}")
SNAP_RE = re.compile(r"[0-9]{1,2}")
DET_NAME_FORM_RE = re.compile(r"R[0-9][0-9]_S[0-9][0-9]")
log = logging.getLogger("dc2flow.viewer")


def resolve_image(root: str | os.PathLike, rel: str) -> Path:
    """The real path of an eimage named relative to ``root``, refusing anything outside it.

    Raises:
        RegistryError: ``rel`` is absolute, holds ``..``, is not ``{visit:08d}/eimage_*.fits``, or
        resolves (through symlinks) outside ``root``; ``FileNotFoundError`` if it does not exist.
    """
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise RegistryError("path", "empty or not text", rel, "name an image relative to the output root")
    if os.path.isabs(rel) or rel.startswith(("/", "\\")):
        raise RegistryError("path", "absolute paths are refused", rel, "name an image relative to the output root")
    if ".." in re.split(r"[/\\]", rel):
        raise RegistryError("path", "'..' is refused", rel, "name an image relative to the output root")
    if not REL_PATH_RE.fullmatch(rel) or not IMAGE_RE.match(os.path.basename(rel)):
        raise RegistryError("path", "not an eimage path", rel, "use {visit:08d}/eimage_....fits")
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(real_root / rel))
    if real_root not in real.parents:
        raise RegistryError("path", "resolves outside the output root", rel, "serve only the campaign's own files")
    try:
        regular = stat.S_ISREG(os.stat(real).st_mode)
    except OSError:
        regular = False
    if not regular:   # absent, a FIFO, a device, a directory
        raise FileNotFoundError(rel)
    return real


def list_images(root: str | os.PathLike) -> list[str]:
    """Every eimage under ``root`` that :func:`resolve_image` would serve (a regular file inside
    the root, not a FIFO or a link leading out), as a path relative to it, sorted."""
    root = os.fspath(root)
    out = []
    for visit_dir in sorted(os.listdir(root)):
        if VISIT_RE.fullmatch(visit_dir) and len(visit_dir) == 8 and os.path.isdir(os.path.join(root, visit_dir)):
            for n in sorted(os.listdir(os.path.join(root, visit_dir))):
                if IMAGE_RE.match(n):
                    try:
                        resolve_image(root, f"{visit_dir}/{n}")
                    except (RegistryError, FileNotFoundError):
                        continue
                    out.append(f"{visit_dir}/{n}")
    return out


def render_png(image: Path, stretch: str, overlay: bool) -> bytes:
    """The image as PNG, binned to at most ~:data:`MAX_PNG_PIXELS` across, optionally with truth circles."""
    from astropy.io import fits

    with fits.open(image, memmap=True) as hdul:
        pixels = np.asarray(hdul[0].data, dtype=np.float32)
    factor = max(1, math.ceil(max(pixels.shape) / MAX_PNG_PIXELS))
    binned = bin_image(pixels, factor)
    grey = to_grey(binned, stretch, stretch_limits(binned, stretch))
    if not overlay:
        return encode_png(grey)
    from PIL import Image, ImageDraw

    img = Image.fromarray(grey).convert("RGB")
    truth = image.with_name(image.name.replace("eimage_", "centroid_").replace(".fits", ".txt.gz"))
    if truth.is_file():
        import pandas as pd

        table = pd.read_csv(truth, sep="\t", usecols=["x", "y", "flux"])
        table = table.nlargest(MAX_OVERLAY_OBJECTS, "flux")
        draw = ImageDraw.Draw(img)
        ny = binned.shape[0]
        for x, y in zip(table["x"].to_numpy(), table["y"].to_numpy()):
            # 1-based FITS pixel -> binned PNG pixel (row 0 at the top)
            px, py = (x - 0.5) / factor, ny - (y - 0.5) / factor
            draw.ellipse((px - 4, py - 4, px + 4, py + 4), outline=(255, 60, 60))
    return encode_png(np.asarray(img))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dc2flow viewer{% if rel %}: {{ rel }}{% endif %}</title>
<style>body{font-family:sans-serif;margin:1em;background:#222;color:#eee} a{color:#9cf}
.bar a,.bar button{margin-right:.6em} .on{font-weight:bold;text-decoration:underline}
img{max-width:100%;image-rendering:pixelated;border:1px solid #555} table{border-collapse:collapse}
td,th{border:1px solid #555;padding:.2em .5em} textarea{width:30em;height:3em}</style></head><body>
<h1>dc2flow viewer</h1>
<p class="bar"><a href="{{ url_for('problems') }}" id="problems-link">reported problems ({{ n_problems }})</a>
 · {{ n_images }} images under the output root</p>
{% if rel %}
<h2 id="title">visit {{ visit }} · snap {{ snap }} · {{ det_name }} · band {{ band }}</h2>
<p class="bar">stretch:
{% for s in stretches %}<a id="stretch-{{ s }}" class="{{ 'on' if s == stretch else '' }}"
 href="{{ url_for('sensor', path=rel, stretch=s, overlay=overlay) }}">{{ s }}</a>{% endfor %}
 · <a id="toggle-overlay" href="{{ url_for('sensor', path=rel, stretch=stretch, overlay=0 if overlay else 1) }}">
 {{ 'hide' if overlay else 'show' }} truth overlay</a>
 · <a id="skip" href="{{ url_for('random_image', stretch=stretch, overlay=overlay, after=rel) }}">Skip</a></p>
<form id="problem-form" method="post" action="{{ url_for('problems') }}">
 <input type="hidden" name="token" value="{{ token }}">
 <input type="hidden" name="visit" value="{{ visit }}"><input type="hidden" name="snap" value="{{ snap }}">
 <input type="hidden" name="det_name" value="{{ det_name }}">
 <label>problem <select name="category" id="category">{% for c in categories %}<option>{{ c }}</option>{% endfor %}</select></label>
 <label>comment <textarea name="comment" id="comment" maxlength="{{ max_comment }}"></textarea></label>
 <button type="submit" id="submit-problem">Submit problem</button>
</form>
<p><img id="sensor-image" alt="{{ rel }}" src="{{ url_for('image_png', path=rel, stretch=stretch, overlay=overlay) }}"></p>
{% else %}<p>No images yet under the output root.</p>{% endif %}
</body></html>"""

PROBLEMS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dc2flow viewer: problems</title>
<style>body{font-family:sans-serif;margin:1em;background:#222;color:#eee} a{color:#9cf}
table{border-collapse:collapse} td,th{border:1px solid #555;padding:.2em .5em} td{overflow-wrap:anywhere}</style></head><body>
<h1>Reported problems</h1><p><a href="{{ url_for('random_image') }}" id="back">back to the images</a></p>
<table id="problems"><tr><th>id</th><th>visit</th><th>snap</th><th>det_name</th><th>category</th><th>comment</th><th>reported (UTC)</th></tr>
{% for p in problems %}<tr><td>{{ p.id }}</td><td>{{ p.visit }}</td><td>{{ p.snap }}</td><td>{{ p.det_name }}</td><td>{{ p.category }}</td>
<td>{{ p.comment }}</td><td>{{ p.created_utc }}</td></tr>{% endfor %}</table></body></html>"""


def _resolve_host(host: str) -> list:
    """Every address ``host`` means to the socket layer (``0``, ``0x0``, ``127.1`` included), IPv4-mapped
    IPv6 addresses as their IPv4 address."""
    import ipaddress

    name = host.strip("[]")
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RegistryError("--host", f"cannot resolve ({exc})", host, "give 127.0.0.1, localhost or ::1") from None
    addrs = []
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        addrs.append(addr)
    return addrs


def allowed_hosts(host: str, port: int, allow_remote: bool = False) -> set[str]:
    """The ``Host`` header values the viewer answers, lower case.

    ``host`` is resolved first (:func:`_resolve_host`), so every spelling of an address counts as
    that address.  On a loopback address: ``127.0.0.1:<port>``, ``localhost:<port>`` and
    ``[::1]:<port>`` (what a browser on this machine, or through an ``ssh -L`` tunnel, sends).  Any
    other address is refused unless ``allow_remote``; then only that address or name, as given.

    Raises:
        RegistryError: ``host`` means an unspecified address (``0.0.0.0``, ``0``, ``0x0``, ``::``,
            ``::ffff:0.0.0.0``), for which the viewer cannot tell its own name from a rebound one; or
            a non-loopback address without ``allow_remote``; or it cannot be resolved.
    """
    addrs = _resolve_host(host)
    if any(a.is_unspecified for a in addrs):
        raise RegistryError("--host", "means every address (unspecified), which leaves the Host header unchecked",
                            host, "give 127.0.0.1 and use an ssh tunnel")
    if all(a.is_loopback for a in addrs):
        return {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    if not allow_remote:
        raise RegistryError("--host", f"resolves to a non-loopback address ({', '.join(map(str, addrs))})", host,
                            "give 127.0.0.1 and use an ssh tunnel, or opt in with --allow-remote (allow_remote=True)")
    name = host.strip("[]").lower()
    return {f"[{name}]:{port}" if ":" in name else f"{name}:{port}"}


def create_app(outdir: str | os.PathLike, db_url: str, categories: list[str], max_comment_chars: int,
               host: str = "127.0.0.1", port: int = 8765, allow_remote: bool = False):
    """The Flask application serving ``outdir``'s images and recording problems in ``db_url``.

    ``host`` and ``port`` are where it is served: requests whose ``Host`` header is not in
    :func:`allowed_hosts` are refused (403).
    """
    from flask import Flask, Response, abort, redirect, render_template_string, request, url_for

    root = os.path.realpath(outdir)
    if not os.path.isdir(root):
        raise RegistryError(os.fspath(outdir), "not a directory", None, "give the campaign's output root")
    hosts = allowed_hosts(host, port, allow_remote)
    engine = connect(db_url)
    token = secrets.token_urlsafe(32)
    app = Flask("dc2flow.viewer")
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024)

    def _image_arg() -> tuple[str, Path]:
        rel = request.args.get("path", "")
        try:
            return rel, resolve_image(root, rel)
        except RegistryError as exc:
            abort(403 if "outside" in exc.reason or "refused" in exc.reason else 400, description=str(exc))
        except FileNotFoundError:
            abort(404, description=f"{rel}: no such image")

    def _view_args() -> tuple[str, int]:
        stretch = request.args.get("stretch", "zscale")
        overlay = request.args.get("overlay", "0")   # the truth overlay is off unless asked for
        if stretch not in STRETCHES or overlay not in ("0", "1"):
            abort(400, description=f"stretch must be one of {', '.join(STRETCHES)} and overlay 0 or 1")
        return stretch, int(overlay)

    @app.before_request
    def _check_host():
        if request.headers.get("Host", "").lower() not in hosts:
            abort(403, description=f"Host header not one of {', '.join(sorted(hosts))} (DNS rebinding?)")

    @app.after_request
    def _headers(resp):
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'unsafe-inline'"
        resp.headers["X-Frame-Options"] = "DENY"
        return resp

    @app.get("/")
    def random_image():
        stretch, overlay = _view_args()
        images = list_images(root)
        if not images:
            return render_template_string(PAGE, rel=None, n_images=0, n_problems=len(list_problems(engine)))
        after = request.args.get("after")
        choices = [p for p in images if p != after] or images
        return redirect(url_for("sensor", path=random.choice(choices), stretch=stretch, overlay=overlay), 303)

    @app.get("/sensor")
    def sensor():
        rel, _ = _image_arg()
        stretch, overlay = _view_args()
        m = IMAGE_RE.match(os.path.basename(rel))
        return render_template_string(
            PAGE, rel=rel, visit=int(m.group(1)), snap=int(m.group(2)), band=m.group(3), det_name=m.group(4), stretch=stretch,
            overlay=overlay, stretches=STRETCHES, categories=categories, token=token, max_comment=max_comment_chars,
            n_images=len(list_images(root)), n_problems=len(list_problems(engine)))

    @app.get("/image.png")
    def image_png():
        _, path = _image_arg()
        stretch, overlay = _view_args()
        try:
            png = render_png(path, stretch, bool(overlay))
        except Exception as exc:   # truncated, empty or not FITS at all
            log.warning("cannot render %s: %s: %s", path, type(exc).__name__, exc)
            abort(422, description="this file cannot be read as an image")
        return Response(png, mimetype="image/png",
                        headers={"Cache-Control": "private, max-age=300"})

    @app.route("/problems", methods=["GET", "POST"])
    def problems():
        if request.method == "GET":
            return render_template_string(PROBLEMS_PAGE, problems=list_problems(engine))
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
            abort(403, description="cross-origin form posts are refused")
        if not hmac.compare_digest(request.form.get("token", ""), token):
            abort(403, description="missing or stale page token; reload the page")
        form = request.form
        unknown = sorted(set(form) - {"token", "visit", "snap", "det_name", "category", "comment"})
        if unknown:
            abort(400, description=f"unknown form field {unknown[0]!r}")
        visit_text = form.get("visit", "")
        visit = int(visit_text) if VISIT_RE.fullmatch(visit_text) else visit_text
        snap_text = form.get("snap", "0")   # the page sends it; a form without it means snap 0
        if not SNAP_RE.fullmatch(snap_text):
            abort(400, description="snap must be a number 0, 1, ...")
        snap = int(snap_text)
        det_name = form.get("det_name")
        if not (isinstance(det_name, str) and DET_NAME_FORM_RE.fullmatch(det_name)):
            abort(400, description="det_name must look like R22_S11")
        if isinstance(visit, int) and not any(
                p.startswith(f"{visit:08d}/eimage_{visit:08d}-{snap}-") and f"-{det_name}-" in p for p in list_images(root)):
            abort(404, description=f"no image of visit {visit} snap {snap} sensor {det_name} under the output root")
        try:
            add_problem(engine, visit, det_name, form.get("category"), form.get("comment", ""),
                        categories, max_comment_chars, snap=snap)   # checks every field first
        except RegistryError as exc:
            abort(400, description=str(exc))
        return redirect(url_for("problems"), 303)

    app.extensions["dc2flow_engine"] = engine
    return app


def serve(outdir: str | os.PathLike, db_url: str, categories: list[str], max_comment_chars: int,
          host: str = "127.0.0.1", port: int = 8765, allow_remote: bool = False) -> None:
    """Run the viewer until interrupted (Flask's threaded server: a tool for a few people, not a site)."""
    app = create_app(outdir, db_url, categories, max_comment_chars, host, port, allow_remote)
    print(f"dc2flow viewer: serving {os.path.realpath(outdir)} on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    app.run(host=host, port=port, debug=False, threaded=True, use_reloader=False)
