"""Offline HTML reports with PNG figures (matplotlib Figure objects; never pyplot).

A report is a folder: ``report.html`` plus ``figures/*.png`` next to it, referenced
by relative paths. It loads nothing from the network (no scripts, fonts or style
sheets from elsewhere), so it opens from a USB stick or an air-gapped machine.

:func:`check_report` is the documented check that a report is whole: it parses the
HTML, verifies that every ``<img src>`` (and any other ``src``/``href`` it holds)
points at a file inside the report folder (or a ``data:`` URI) that decodes as a
PNG, and that nothing refers to a remote URL. No headless browser is needed; the
test suite runs it on every report it builds.

:func:`pipeline_report` builds the report of :func:`fastct.pipeline.run` from the
volumes the run wrote into the archive, reading only the slices it draws.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import sys
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "check_report",
    "html_table",
    "pipeline_report",
    "save_figure",
    "write_html",
]

#: Display window for CT slices (HU): the lung window, level -600, width 1500.
LUNG_WINDOW = (-1350.0, 150.0)
_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eee; } td.l { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #555; }
.summary li { margin: 0.2em 0; }
.banner { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.6em; }
table.nodules td { font-size: 0.85em; }
tr.bad td { background: #fbe3e3; } tr.good td { background: #e6f4e6; }
.legend { font-size: 0.85em; color: #555; }
.crops { display: flex; flex-wrap: wrap; gap: 0 1em; }
.crops figure { width: 390px; margin: 0.5em 0; }
footer { font-size: 0.8em; color: #555; margin-top: 2em; }
"""


class _Plotting:
    """The few pyplot calls the report makes, on ``matplotlib.figure.Figure`` objects.

    Figures are created directly (not through pyplot), so making a report never selects
    a backend (a notebook's inline or widget backend stays as it was), never imports
    pyplot and leaves no figure registered with it; ``Figure.savefig`` renders with the
    Agg canvas whatever the backend.
    """

    def __init__(self) -> None:
        from matplotlib.figure import Figure
        from matplotlib.image import imread
        from matplotlib.patches import Circle

        self._figure = Figure
        self.imread = imread
        self.Circle = Circle

    def subplots(
        self, nrows: int = 1, ncols: int = 1, *, figsize: Any = None, squeeze: bool = True
    ) -> tuple[Any, Any]:
        fig = self._figure(figsize=figsize)
        return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def _pyplot() -> _Plotting:
    """The plotting calls of the report (pyplot's names, without pyplot)."""
    return _Plotting()


def save_figure(
    fig: Any, folder: str | os.PathLike, name: str, *, dpi: int = 90, tight: bool = True
) -> str:
    """Save a matplotlib figure as ``folder/figures/<name>.png``; return the relative path.

    ``tight=False`` keeps the figure's own layout (no tight bounding box: one drawing
    pass instead of two, for the many small crops of a report).

    A figure made with pyplot is closed afterwards (pyplot's own ``close``, only when the
    caller has imported pyplot); a plain ``Figure`` needs no closing. The global
    matplotlib backend is never changed.
    """
    folder = Path(folder)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    rel = f"figures/{name}.png"
    try:
        fig.savefig(folder / rel, dpi=dpi, bbox_inches="tight" if tight else None, format="png")
    finally:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close(fig)
    return rel


def html_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str, str]],
) -> str:
    """An HTML table; ``columns`` are ``(key, heading, format spec)`` (spec '' = str).

    Examples
    --------
    >>> html_table([{"a": 1.234, "b": "x"}], [("a", "A", ".1f"), ("b", "B", "")])
    '<table><tr><th>A</th><th>B</th></tr><tr><td>1.2</td><td class="l">x</td></tr></table>'
    """
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in columns)
    body = []
    for row in rows:
        cells = []
        for key, _, spec in columns:
            value = row.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("<td>-</td>")
            elif spec:
                cells.append(f"<td>{format(value, spec)}</td>")
            else:
                cells.append(f'<td class="l">{html.escape(str(value))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def figure_html(src: str, caption: str) -> str:
    """A ``<figure>`` block for a relative image path."""
    return (
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def write_html(folder: str | os.PathLike, title: str, blocks: Sequence[str]) -> Path:
    """Write ``folder/report.html`` from HTML blocks (self-contained CSS, no scripts)."""
    path = Path(folder) / "report.html"
    doc = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(blocks) + "\n</body></html>\n"
    )
    path.write_text(doc, encoding="utf-8")
    return path


# -- the check ---------------------------------------------------------------------------
class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.styles: list[str] = []
        self._in_style = False
        self.row_ids: list[str] = []  # <tr data-nodule=ID> of the nodule table
        self.crop_ids: set[str] = set()  # <figure data-nodule=ID> holding an <img>
        self._figure: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        nodule = dict(attrs).get("data-nodule")
        if tag == "tr" and nodule:
            self.row_ids.append(nodule)
        elif tag == "figure":
            self._figure = nodule
        elif tag == "img" and self._figure:
            self.crop_ids.add(self._figure)
        for key, value in attrs:
            if key in ("src", "href", "srcset", "data", "poster") and value is not None:
                self.refs.append((tag, key, value))
            if key == "style" and value:
                self.styles.append(value)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False
        if tag == "figure":
            self._figure = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_problem(data: bytes) -> str | None:
    if not data.startswith(_PNG_SIGNATURE):
        return "is not a PNG file"
    try:
        plt = _pyplot()
        img = plt.imread(io.BytesIO(data), format="png")
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the finding
        return f"does not decode as PNG ({type(exc).__name__}: {exc})"
    if img.ndim < 2 or img.shape[0] == 0 or img.shape[1] == 0:
        return "decodes to an empty image"
    return None


def check_report(path: str | os.PathLike) -> list[str]:
    """Problems of an HTML report; an empty list means it is whole and offline.

    Checks that every ``<img src>`` exists inside the report's folder (or is a
    ``data:`` URI) and decodes as a PNG, that every other ``src``/``href`` is a local
    file or an in-page anchor, and that neither attributes nor CSS ``url(...)`` refer
    to a remote resource (``http:``, ``https:``, ``ftp:``, ``//host``). In a follow-up
    read, every nodule ID of the table (``<tr data-nodule=ID>``) must be unique and
    have its crop (a ``<figure data-nodule=ID>`` holding an image).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_html(d, "t", ['<img src="figures/missing.png">'])
    >>> check_report(d / "report.html")
    ["<img src='figures/missing.png'>: file not found"]
    """
    import re

    path = Path(path)
    if not path.is_file():
        return [f"{str(path)!r}: report file not found"]
    folder = path.parent.resolve()
    parser = _Refs()
    parser.feed(path.read_text(encoding="utf-8"))
    problems: list[str] = []
    remote = re.compile(r"^\s*(https?:|ftp:|//)", re.IGNORECASE)
    for css in parser.styles:
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", css):
            if remote.match(url):
                problems.append(f"CSS url({url}): remote resource")
    n_images = 0
    for tag, key, value in parser.refs:
        where = f"<{tag} {key}={value[:60]!r}>"
        if remote.match(value):
            problems.append(f"{where}: remote resource")
            continue
        if value.startswith("#") or value.startswith("mailto:"):
            continue
        if value.startswith("data:"):
            if tag == "img":
                n_images += 1
                head, _, payload = value.partition(",")
                if not head.startswith("data:image/png") or ";base64" not in head:
                    problems.append(f"<img> data URI: not a base64 PNG ({head[:40]})")
                    continue
                try:
                    data = base64.b64decode(payload, validate=True)
                except ValueError:
                    problems.append("<img> data URI: bad base64")
                    continue
                issue = _png_problem(data)
                if issue:
                    problems.append(f"<img> data URI {issue}")
            continue
        target = (folder / value.split("#")[0].split("?")[0]).resolve()
        if folder not in target.parents and target != folder:
            problems.append(f"{where}: points outside the report folder")
            continue
        if not target.is_file():
            problems.append(f"{where}: file not found")
            continue
        if tag == "img":
            n_images += 1
            issue = _png_problem(target.read_bytes())
            if issue:
                problems.append(f"{where}: {issue}")
    seen: set[str] = set()
    for rid in parser.row_ids:
        if rid in seen:
            problems.append(f"nodule {rid!r}: two table rows have this ID")
        seen.add(rid)
        if rid not in parser.crop_ids:
            problems.append(f"nodule {rid!r}: no crop figure for this table row")
    return problems


# -- figures of the pipeline -------------------------------------------------------------
def _show(ax: Any, img: np.ndarray, aspect: float, title: str, **kw: Any) -> Any:
    kw.setdefault("cmap", "gray")
    if kw["cmap"] == "gray":
        kw.setdefault("vmin", LUNG_WINDOW[0])
        kw.setdefault("vmax", LUNG_WINDOW[1])
    im = ax.imshow(img, aspect=aspect, interpolation="nearest", **kw)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return im


def _planes(vol: Any, z: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(vol[z], dtype=np.float32), np.asarray(vol[:, y, :], dtype=np.float32)


def _boundaries(labels: np.ndarray) -> np.ndarray:
    b = np.zeros(labels.shape, dtype=bool)
    b[:-1, :] |= labels[:-1, :] != labels[1:, :]
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return b & ((labels > 0) | np.roll(labels > 0, 1, 0) | np.roll(labels > 0, 1, 1))


def _checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    ny, nx = a.shape
    yy = (np.arange(ny) * tiles // max(1, ny))[:, None]
    xx = (np.arange(nx) * tiles // max(1, nx))[None, :]
    return np.where((yy + xx) % 2 == 0, a, b)


def _sample_plane(vol: Any, points_mm: np.ndarray, cval: float = -1000.0) -> np.ndarray:
    """Trilinear samples of ``vol`` at physical points (..., 3), reading only their box."""
    from scipy import ndimage as ndi

    from ._geometry import physical_to_index

    flat = physical_to_index(points_mm.reshape(-1, 3), vol.spacing, vol.origin, vol.direction)
    lo = np.maximum(np.floor(flat.min(axis=0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(flat.max(axis=0)).astype(int) + 2, np.asarray(vol.shape))
    if np.any(hi <= lo):
        return np.full(points_mm.shape[:-1], cval, dtype=np.float32)
    box = np.asarray(vol[tuple(slice(a, b) for a, b in zip(lo, hi))], dtype=np.float32)
    coords = (flat - lo).T
    out = ndi.map_coordinates(box, coords, order=1, mode="constant", cval=cval)
    # Points outside the volume itself (not only outside the box) get cval too.
    outside = np.any((flat < -0.5) | (flat > np.asarray(vol.shape) - 0.5), axis=1)
    out[outside] = cval
    return out.reshape(points_mm.shape[:-1]).astype(np.float32)


def _plane_points(shape, spacing, origin, axis: int, index: int, direction=None) -> np.ndarray:
    """Physical points (``origin + direction @ (index * spacing)``) of one index plane."""
    from ._geometry import index_to_physical

    grids = [np.arange(n) for n in shape]
    grids[axis] = np.array([index])
    mesh = np.stack(np.meshgrid(*grids, indexing="ij"), axis=-1)
    pts = index_to_physical(mesh, spacing, origin, direction)
    return np.squeeze(pts, axis=axis)


def _focus(result: Any, shape: tuple[int, ...], spacing, origin, direction=None):
    """Voxel index (of the baseline grid) to centre the figures on."""
    from ._geometry import physical_to_index

    dets = result.detections["baseline"] or result.detections["followup"]
    if dets:
        best = max(dets, key=lambda d: (d["diameter_mm"], d["probability"]))
        idx = np.rint(physical_to_index(best["center_mm"], spacing, origin, direction))
        idx = idx.astype(int)
        return tuple(int(np.clip(i, 0, n - 1)) for i, n in zip(idx, shape))
    return tuple(n // 2 for n in shape)


def pipeline_report(folder: str | os.PathLike, result: Any, ar: Any, root: str, transform: Any):
    """Write ``report.html`` and its figures for a pipeline run into ``folder``.

    ``ar`` is the open archive holding the run's volumes under ``root``; only the
    slices drawn are read.
    """
    plt = _pyplot()
    folder = Path(folder)
    base = {k: ar[f"{root}/baseline/{k}"] for k in ("denoised", "enhanced", "lungs")}
    base["supervoxels"] = ar[f"{root}/baseline/supervoxels"]
    base["probability"] = ar[f"{root}/baseline/probability"]
    follow_prob = ar[f"{root}/followup/probability"]
    b_img = ar[_attr(ar, f"{root}/baseline", "source")]
    f_img = ar[_attr(ar, f"{root}/followup", "source")]
    registered = ar[f"{root}/followup_registered"]
    diff = ar[f"{root}/difference"]
    shape, spacing, origin = b_img.shape, np.asarray(b_img.spacing), np.asarray(b_img.origin)
    b_dir = b_img.direction
    z, y, _ = _focus(result, shape, spacing, origin, b_dir)
    ax_aspect = spacing[1] / spacing[2]
    co_aspect = spacing[0] / spacing[2]
    blocks: list[str] = [_RESEARCH_BANNER, _summary_html(result)]

    # 0. the read: nodule table, paired crops, candidates below the threshold.
    blocks.append("<h2>Nodules</h2>")
    blocks.append(_rules_html(result))
    blocks.append(_nodule_table_html(result))
    if result.truth is not None and result.truth.get("rows"):
        blocks.append(_truth_rows_html(result.truth["rows"]))
    blocks.append("<h2>Nodule crops</h2>")
    blocks.append(
        "<p>Baseline (left) and follow-up resampled onto the baseline grid with the "
        "registration (right), the same window of the baseline grid, each panel on the "
        "axial slice through its own nodule's centre (the follow-up centre mapped back), "
        "lung window "
        "W 1500 / L -600; contours: the nodule region (solid line: detection above the "
        "threshold; dashed: a candidate below it); scale bar 10 mm; orientation letters "
        "from the direction cosines (A/P anterior/posterior, R/L patient right/left).</p>"
    )
    crops = _NoduleCrops(ar, root, b_img, f_img, registered, result)
    blocks.append(
        "<div class='crops'>"
        + "".join(crops.figure(plt, folder, row) for row in result.nodules)
        + "</div>"
    )
    blocks.append(_candidates_html(result))

    # 1. raw / denoised / enhanced, axial and coronal.
    fig, axes = plt.subplots(2, 3, figsize=(12, 8))
    for col, (name, vol) in enumerate(
        (("raw", b_img), ("denoised", base["denoised"]), ("enhanced", base["enhanced"]))
    ):
        a, c = _planes(vol, z, y)
        _show(axes[0, col], a, ax_aspect, f"{name}, axial z={z}")
        _show(axes[1, col], c[::-1], co_aspect, f"{name}, coronal y={y}")
    blocks.append("<h2>Denoising and enhancement</h2>")
    blocks.append(
        figure_html(
            save_figure(fig, folder, "preprocessing"),
            "Baseline: raw, denoised (detector preprocessing) and enhanced (unsharp mask); "
            "lung window." + _orientation_note(b_dir),
        )
    )

    # 2. lung mask and supervoxel boundaries.
    den = np.asarray(base["denoised"][z], dtype=np.float32)
    sv = np.asarray(base["supervoxels"][z])
    lungs = np.asarray(base["lungs"][z]) > 0
    fig, axes = plt.subplots(1, 2, figsize=(12, 6))
    _show(axes[0], den, ax_aspect, "lung mask")
    axes[0].contour(lungs, levels=[0.5], colors="lime", linewidths=1)
    _show(axes[1], den, ax_aspect, f"supervoxels ({len(np.unique(sv)) - (sv == 0).any()} here)")
    edges = np.ma.masked_where(~_boundaries(sv), np.ones(sv.shape))
    axes[1].imshow(edges, aspect=ax_aspect, cmap="autumn", interpolation="nearest", alpha=0.9)
    blocks.append("<h2>Lung mask and supervoxels</h2>")
    blocks.append(
        figure_html(
            save_figure(fig, folder, "supervoxels"),
            f"Baseline axial slice z={z}: lung mask outline and supervoxel boundaries.",
        )
    )

    # 3. detections with probabilities, per time point.
    blocks.append("<h2>Detections (all, above the threshold)</h2>")
    for tp, image, prob in (
        ("baseline", b_img, base["probability"]),
        ("followup", f_img, follow_prob),
    ):
        dets = result.detections[tp]
        blocks.append(_detections_figure(plt, folder, tp, image, prob, dets))

    # 4. registration checkerboards before and after.
    fixed_ax = np.asarray(base["denoised"][z], dtype=np.float32)
    fixed_co = np.asarray(base["denoised"][:, y, :], dtype=np.float32)
    before_ax = _sample_plane(f_img, _plane_points(shape, spacing, origin, 0, z, b_dir))
    before_co = _sample_plane(f_img, _plane_points(shape, spacing, origin, 1, y, b_dir))
    after_ax, after_co = _planes(registered, z, y)
    fig, axes = plt.subplots(2, 2, figsize=(11, 10))
    _show(axes[0, 0], _checkerboard(fixed_ax, before_ax), ax_aspect, "before registration, axial")
    _show(axes[0, 1], _checkerboard(fixed_ax, after_ax), ax_aspect, "after registration, axial")
    _show(axes[1, 0], _checkerboard(fixed_co, before_co)[::-1], co_aspect, "before, coronal")
    _show(axes[1, 1], _checkerboard(fixed_co, after_co)[::-1], co_aspect, "after, coronal")
    reg = result.registration
    err = ""
    if result.truth is not None:
        err = f" Registration error against the phantom's truth: {result.truth['registration_error_mm']:.3f} mm."
    blocks.append("<h2>Registration</h2>")
    blocks.append(
        figure_html(
            save_figure(fig, folder, "checkerboard"),
            f"Checkerboard of baseline and follow-up before (same physical grid) and after "
            f"{reg['transform']} registration (scale {reg['scale']:.4f}).{err}",
        )
    )
    matrix = np.asarray(reg["matrix"])
    blocks.append(
        "<p>Transform (baseline physical mm &rarr; follow-up physical mm, z y x):</p><pre>"
        + html.escape(np.array2string(matrix, precision=4, suppress_small=True))
        + "</pre>"
    )

    # 5. difference map.
    d_ax, d_co = _planes(diff, z, y)
    lim = float(np.percentile(np.abs(d_ax), 99.5)) or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    im = _show(axes[0], d_ax, ax_aspect, "difference, axial", cmap="RdBu_r", vmin=-lim, vmax=lim)
    _show(axes[1], d_co[::-1], co_aspect, "difference, coronal", cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=axes, shrink=0.7, label="HU (follow-up registered - baseline)")
    blocks.append("<h2>Difference map</h2>")
    blocks.append(
        figure_html(
            save_figure(fig, folder, "difference"),
            "Registered follow-up minus baseline (denoised), HU.",
        )
    )

    # 7. FROC and truth.
    if result.truth is not None:
        blocks.append("<h2>Against the ground truth</h2>")
        rows = [{"scan": tp, **result.truth[tp]} for tp in ("baseline", "followup")]
        for r in rows:
            r["missed"] = ", ".join(map(str, r["missed"])) or "none"
        blocks.append(
            html_table(
                rows,
                [
                    ("scan", "scan", ""),
                    ("found", "found", "d"),
                    ("total", "true nodules >= 5 mm", "d"),
                    ("missed", "missed ids", ""),
                    ("false_positives", "false positives", "d"),
                ],
            )
        )
        froc = result.truth.get("froc")
        if froc:
            fig, ax = plt.subplots(figsize=(6, 4.5))
            ax.plot(froc["curve_fps"], froc["curve_sensitivity"], drawstyle="steps-post")
            ax.plot(froc["fps_per_scan"], froc["sensitivity"], "o", label="operating points")
            ax.set_xscale("symlog", linthresh=0.125)
            ax.legend(loc="lower right")
            ax.set_xlabel("false positives per scan")
            ax.set_ylabel("sensitivity")
            ax.set_ylim(0, 1.05)
            ax.grid(alpha=0.3)
            ax.set_title("FROC (baseline and follow-up)")
            blocks.append(
                figure_html(
                    save_figure(fig, folder, "froc"),
                    "FROC over both scans (nodules >= 5 mm; hit within max(radius, 3 mm)).",
                )
            )

    # 8. stage timings.
    blocks.append(_timings_html(plt, folder, result.timings))
    blocks.append(_footer_html(result))
    return write_html(
        folder, f"fastct follow-up read (research use): run {result.run_name}", blocks
    )


def _orientation_note(direction: Any) -> str:
    """Caption note for a baseline not stored LPS: the figures show array planes."""
    from ._geometry import orientation_code

    code = orientation_code(direction)
    if code == "LPS":
        return ""
    return (
        f" The baseline is stored {code}: 'axial' and 'coronal' are the planes of array "
        "axes 0 and 1 as stored; positions (mm) are physical LPS points."
    )


def _attr(ar: Any, name: str, key: str) -> str:
    value = ar.get_attrs(name)[key]
    return value.decode() if isinstance(value, bytes) else str(value)


def _detections_figure(plt, folder: Path, tp: str, image, prob, dets) -> str:
    from ._geometry import physical_to_index

    spacing, origin = np.asarray(image.spacing), np.asarray(image.origin)
    aspect = spacing[1] / spacing[2]
    shown = sorted(dets, key=lambda d: -d["probability"])[:8]
    if not shown:
        z = image.shape[0] // 2
        fig, ax = plt.subplots(figsize=(5, 5))
        _show(ax, np.asarray(image[z], dtype=np.float32), aspect, f"{tp}: no detections")
        return figure_html(save_figure(fig, folder, f"detections_{tp}"), f"{tp}: no detections.")
    ncol = min(4, len(shown))
    nrow = -(-len(shown) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.6 * nrow), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, d in enumerate(shown):
        ax = axes.ravel()[k]
        idx = np.rint(physical_to_index(d["center_mm"], spacing, origin, image.direction))
        idx = np.clip(idx.astype(int), 0, np.asarray(image.shape) - 1)
        half = int(max(20, 2.5 * d["diameter_mm"] / spacing[2]))
        ys = slice(max(0, idx[1] - half), min(image.shape[1], idx[1] + half))
        xs = slice(max(0, idx[2] - half), min(image.shape[2], idx[2] + half))
        crop = np.asarray(image[idx[0], ys, xs], dtype=np.float32)
        pcrop = np.asarray(prob[idx[0], ys, xs], dtype=np.float32)
        _show(ax, crop, aspect, f"p={d['probability']:.2f}, {d['diameter_mm']:.1f} mm, z={idx[0]}")
        ax.imshow(
            np.ma.masked_where(pcrop < 0.5, pcrop),
            aspect=aspect,
            cmap="autumn",
            vmin=0,
            vmax=1,
            alpha=0.35,
            interpolation="nearest",
        )
        r = 0.5 * d["diameter_mm"] / spacing[2] + 3
        ax.add_patch(
            plt.Circle((idx[2] - xs.start, idx[1] - ys.start), r, fill=False, color="lime", lw=1)
        )
    caption = (
        f"{tp}: the {len(shown)} most probable of {len(dets)} detections (axial crops, "
        "probability map >= 0.5 in colour)."
    )
    return figure_html(save_figure(fig, folder, f"detections_{tp}"), caption)


def _timings_html(plt, folder: Path, timings: dict[str, float]) -> str:
    names = list(timings)
    secs = [timings[k] for k in names]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1))
    ax.barh(names[::-1], secs[::-1], color="#4477aa")
    ax.set_xlabel("seconds")
    ax.set_title(f"stage timings (total {sum(secs):.1f} s)")
    rows = [{"stage": k, "seconds": v} for k, v in timings.items()]
    return (
        "<h2>Stage timings</h2>"
        + figure_html(save_figure(fig, folder, "timings"), "Wall-clock seconds per stage.")
        + html_table(rows, [("stage", "stage", ""), ("seconds", "seconds", ".2f")])
    )


_RESEARCH_BANNER = (
    "<p class='banner'><b>Research use only.</b> This report is produced automatically by "
    "fastct's detector and measurements; it is not a medical device and must not guide "
    "patient care. Categories are <i>Lung-RADS v2022-style</i> (documented size rules "
    "applied to automatic measurements), not a radiologist's Lung-RADS assessment.</p>"
)


def _e(value: Any) -> str:
    """HTML-escaped text of anything (None as '-')."""
    return "-" if value is None else html.escape(str(value))


def _num(value: Any, spec: str, missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def _summary_html(result: Any) -> str:
    rows = result.nodules
    n_b = len(result.detections["baseline"])
    n_f = len(result.detections["followup"])
    matched = sum(1 for r in rows if r["status"] == "matched")
    new = sum(1 for r in rows if r["status"] == "new")
    gone = sum(1 for r in rows if r["status"] != "matched" and r["status"] != "new")
    growing = [r["id"] for r in rows if r.get("growing")]
    thr = (result.thresholds or {}).get("baseline")
    exam = result.exam_category or {}
    interval = f"{result.interval_days:g} days" if result.interval_days else "unknown"
    items = [
        "<b>Lung-RADS v2022-style exam category</b>: baseline "
        f"<b>{_e(exam.get('baseline'))}</b>, follow-up <b>{_e(exam.get('followup'))}</b> "
        "(highest nodule category; rules below the table)",
        f"Detections above the operating threshold ({_num(thr, '.2f')}): {n_b} baseline, "
        f"{n_f} follow-up; {matched} matched, {new} new at follow-up, {gone} not found at "
        f"follow-up; growing (mean diameter +&gt;1.5 mm): {_e(', '.join(growing) or 'none')}",
        f"Candidates below the threshold (listed apart): "
        f"{len(result.candidates.get('baseline', []))} baseline, "
        f"{len(result.candidates.get('followup', []))} follow-up",
        f"Interval between the scans: {_e(interval)}",
        f"Archive: {_e(result.archive.name)}, results under "
        f"<code>/results/{_e(result.run_name)}/</code>; baseline grid "
        f"{' x '.join(map(str, result.shape))} voxels, spacing "
        f"{' x '.join(f'{s:g}' for s in result.spacing)} mm",
        f"Registration: {_e(result.registration['transform'])}, scale "
        f"{result.registration['scale']:.4f}; total time {sum(result.timings.values()):.1f} s",
    ]
    if result.truth is not None:
        t = result.truth
        items.append(_truth_summary_line(t))
    return "<ul class='summary'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _truth_summary_line(t: dict[str, Any]) -> str:
    """Phantom mode: hits, false positives, misses and wrong matches, not only hits."""
    rows = t.get("rows")
    err = f"registration error {t['registration_error_mm']:.3f} mm"
    if not rows:
        return f"Ground truth (phantom): {err}"
    parts = []
    for tp in ("baseline", "followup"):
        p = rows["per_scan"][tp]
        missed = ", ".join(f"T{i}" for i in p["missed"]) or "none"
        parts.append(
            f"{tp}: {p['true_positives']}/{p['total']} true nodules found, "
            f"<b>{p['false_positives']} false positives</b>, missed {_e(missed)}"
        )
    pr = rows["pairs"]
    return (
        f"<b>Ground truth (phantom)</b>, nodules &ge; {rows['min_diameter_mm']:g} mm, hit = "
        f"{_e(rows['hit_rule'])}: " + "; ".join(parts) + f"; pairs: {pr['true']} true, "
        f"<b>{pr['wrong']} wrong matches</b>, {pr['false_positive']} false-positive pairs; "
        f"{rows['tracked']} of {rows['trackable']} true nodules tracked across both scans; "
        f"{err}"
    )


def _rules_html(result: Any) -> str:
    from .pipeline import lungrads, measure

    return (
        "<details><summary>How the table is measured (rules)</summary><ul>"
        "<li>Only detections with probability &ge; the detector's operating threshold "
        "form rows; growth and volume doubling time (VDT) are given only for pairs whose "
        "two members both pass it. VDT = interval &times; ln 2 / ln(V2/V1), shown only for "
        "a nodule whose volume grew by at least 25% (n/a otherwise: never negative).</li>"
        "<li>Nodule region: the detection's supervoxels, voxels &ge; "
        f"{measure.REGION_MIN_HU:g} HU on the denoised image. Mean diameter = (long + "
        "short axis) / 2 on the axial slice of largest area; long axis = largest Feret "
        "diameter, short axis = largest extent perpendicular to it. Volume = voxel count "
        "&times; voxel volume.</li>"
        f"<li>Type: calcified if &ge; {measure.CALCIFIED_FRACTION:.0%} of voxels &gt; "
        f"{measure.CALCIFIED_HU:g} HU; solid if the mean &gt; {measure.SOLID_HU:g} HU; "
        f"part-solid if &ge; {measure.SOLID_CORE_MIN_FRACTION:.0%} of voxels are &gt; "
        f"{measure.SOLID_HU:g} HU (solid core, its mean diameter shown); ground-glass "
        "otherwise.</li>"
        "<li>Location: slice = axial slice index of the centre (baseline grid for "
        "baseline nodules, follow-up grid for new ones); side from the LPS x of the "
        "centre against the middle of the lung mask's x extent (LPS +x = patient left); "
        "zone = upper / middle / lower third of the lung mask's superior-inferior "
        "extent.</li>"
        "<li>Lung-RADS v2022-style: baseline solid &lt;6 mm: 2, 6-&lt;8: 3, 8-&lt;15: "
        "4A, &ge;15: 4B; part-solid &lt;6 mm: 2, solid core &lt;6: 3, 6-&lt;8: 4A, &ge;8: "
        "4B; ground-glass &lt;30 mm: 2, &ge;30: 3; calcified: 1. Follow-up: growing = "
        f"mean diameter up by &gt; {lungrads.GROWTH_MM:g} mm; new solid &lt;4: 2, "
        "4-&lt;6: 3, 6-&lt;8: 4A, &ge;8: 4B; growing solid &lt;8: 4A, &ge;8: 4B; new or "
        "growing part-solid &lt;6 mm: 3, core &lt;4: 4A, &ge;4: 4B; unchanged nodules "
        f"&ge;{lungrads.STABLE_STEP_DOWN_DAYS:g} days after the baseline: 2. Exam = highest "
        "nodule category. Not a clinical tool.</li>"
        "<li>Matching: baseline centres mapped by the registration, one-to-one by least "
        "total distance within the match tolerance (see the footer).</li>"
        "</ul></details>"
    )


_TABLE_COLUMNS = (
    ("ID", None),
    ("status", None),
    ("type", None),
    ("slice B / F", None),
    ("centre (mm, z y x)", None),
    ("side", None),
    ("zone", None),
    ("mean diameter B &rarr; F (mm)", None),
    ("solid core B &rarr; F (mm)", None),
    ("volume B &rarr; F (mm&sup3;)", None),
    ("volume change", None),
    ("VDT (days)", None),
    ("Lung-RADS-style B / F", None),
    ("p B / F", None),
    ("match distance (mm)", None),
    ("note", None),
)


def _type_text(r: dict[str, Any]) -> str | None:
    """The nodule type; 'baseline -> follow-up' when the two reads differ."""
    tb, tf = r.get("type_baseline"), r.get("type_followup")
    if tb and tf and tb != tf:
        return f"{tb} \u2192 {tf}"
    return r.get("type")


def _pair(a: Any, b: Any, spec: str, sep: str = " &rarr; ") -> str:
    return f"{_num(a, spec)}{sep}{_num(b, spec)}"


def _nodule_table_html(result: Any) -> str:
    """The main table: one row per nodule above the threshold, ``data-nodule`` = ID."""
    truth = result.truth is not None and bool(result.truth.get("rows"))
    head = [h for h, _ in _TABLE_COLUMNS]
    if truth:
        head += ["truth B / F", "verdict"]
    out = ["<table class='nodules'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in result.nodules:
        rid = _e(r["id"])
        center = r["center_baseline_mm"] or r["center_followup_mm"]
        status = r["status"] if r["status"] != "matched" else f"matched, {r['change']}"
        vdt = r["doubling_time_days"]
        vdt_txt = (
            _num(vdt, ".0f") if vdt is not None else ("n/a" if r["status"] == "matched" else "-")
        )
        cells = [
            f"<a href='#crop-{rid}'>{rid}</a>",
            _e(status),
            _e(_type_text(r)),
            f"{_e(r.get('slice_baseline'))} / {_e(r.get('slice_followup'))}",
            " ".join(f"{v:.1f}" for v in center),
            _e(r.get("side")),
            _e(r.get("zone")),
            _pair(r.get("mean_diameter_baseline_mm"), r.get("mean_diameter_followup_mm"), ".1f"),
            _pair(r.get("solid_diameter_baseline_mm"), r.get("solid_diameter_followup_mm"), ".1f")
            if (r.get("solid_diameter_baseline_mm") or r.get("solid_diameter_followup_mm"))
            else "-",
            _pair(r["volume_baseline_mm3"], r["volume_followup_mm3"], ".0f"),
            _num(r["volume_change_pct"], "+.0f")
            + ("%" if r["volume_change_pct"] is not None else ""),
            vdt_txt,
            f"{_e(r.get('category_baseline'))} / {_e(r.get('category_followup'))}",
            _pair(r["probability_baseline"], r["probability_followup"], ".2f", " / "),
            _num(r["distance_mm"], ".1f"),
            _e(r.get("note") or ""),
        ]
        cls = ""
        if truth:
            cells += [
                f"{_e(r.get('truth_baseline'))} / {_e(r.get('truth_followup'))}",
                _e(r.get("verdict")),
            ]
            v = r.get("verdict") or ""
            cls = " class='bad'" if ("false" in v or "wrong" in v) else " class='good'"
        out.append(
            f"<tr id='row-{rid}' data-nodule='{rid}'{cls}>"
            + "".join(f"<td class='l'>{c}</td>" for c in cells)
            + "</tr>"
        )
    if not result.nodules:
        out.append(f"<tr><td colspan='{len(head)}'>no detection above the threshold</td></tr>")
    out.append("</table>")
    out.append(
        "<p class='legend'>B = baseline, F = follow-up. Sizes: mean axial diameter "
        "(long + short)/2; VDT n/a for stable or shrinking nodules.</p>"
    )
    return "".join(out)


def _truth_rows_html(rows: dict[str, Any]) -> str:
    per = rows["per_scan"]
    table = html_table(
        [
            {
                "scan": tp,
                "tp": per[tp]["true_positives"],
                "total": per[tp]["total"],
                "fp": per[tp]["false_positives"],
                "missed": ", ".join(f"T{i}" for i in per[tp]["missed"]) or "none",
            }
            for tp in ("baseline", "followup")
        ],
        [
            ("scan", "scan", ""),
            ("tp", "true positives", "d"),
            ("total", f"true nodules >= {rows['min_diameter_mm']:g} mm", "d"),
            ("fp", "false positives", "d"),
            ("missed", "missed", ""),
        ],
    )
    pr = rows["pairs"]
    return (
        "<h3>Against the phantom's truth</h3>"
        f"<p>Hit rule: {_e(rows['hit_rule'])}; T&lt;id&gt; = true nodule, FP = false "
        "positive, (small) = a true nodule below the size counted. Pairs: "
        f"{pr['true']} true, {pr['wrong']} wrong matches (members are not the same true "
        f"nodule), {pr['false_positive']} false-positive pairs; {rows['tracked']} of "
        f"{rows['trackable']} true nodules tracked.</p>" + table
    )


def _candidates_html(result: Any) -> str:
    thr = (result.thresholds or {}).get("baseline")
    parts = []
    total = 0
    for tp in ("baseline", "followup"):
        cands = result.candidates.get(tp, [])
        total += len(cands)
        rows = [
            {
                "scan": tp,
                "p": c["probability"],
                "slice": c.get("slice"),
                "center": " ".join(f"{v:.1f}" for v in c["center_mm"]),
                "type": c.get("type"),
                "d": c.get("mean_diameter_mm"),
                "side": c.get("side"),
                "zone": c.get("zone"),
            }
            for c in cands
        ]
        parts.append(
            html_table(
                rows,
                [
                    ("scan", "scan", ""),
                    ("p", "probability", ".2f"),
                    ("slice", "slice", "d"),
                    ("center", "centre (mm, z y x)", ""),
                    ("type", "type", ""),
                    ("d", "mean diameter (mm)", ".1f"),
                    ("side", "side", ""),
                    ("zone", "zone", ""),
                ],
            )
        )
    return (
        f"<details class='candidates'><summary>Candidates below the operating threshold "
        f"({_num(thr, '.2f')}): {total}, not part of the read</summary>"
        "<p>Regions scoring between half the threshold and the threshold (at most 15 per "
        "scan, most probable first). They are not reported as nodules.</p>"
        + "".join(parts)
        + "</details>"
    )


def _footer_html(result: Any) -> str:
    from . import __version__

    model = result.model or {}
    params = result.parameters or {}
    items = [
        f"fastct {_e(__version__)}",
        f"model: {_e(model.get('path') or model.get('kind') or 'unknown')}"
        + (f", SHA-256 <code>{_e(model.get('sha256'))}</code>" if model.get("sha256") else ""),
        "parameters: " + "; ".join(f"{_e(k)} = {_e(v)}" for k, v in params.items()),
        f"created {_e(result.created or '-')} (UTC)",
    ]
    return "<footer><hr><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul></footer>"


def _axis_letters(vec: Any) -> tuple[str, str]:
    """(letter at the positive end, at the negative end) of an index axis whose
    physical direction (LPS, z y x components) is ``vec``."""
    v = np.asarray(vec, dtype=float)
    k = int(np.argmax(np.abs(v)))
    pos, neg = (("S", "I"), ("P", "A"), ("L", "R"))[k]
    return (pos, neg) if v[k] >= 0 else (neg, pos)


def _sample_nearest(vol: Any, points_mm: np.ndarray, fill: int = 0) -> np.ndarray:
    """Nearest-voxel samples of an integer volume at physical points (..., 3)."""
    from ._geometry import physical_to_index

    flat = np.rint(
        physical_to_index(points_mm.reshape(-1, 3), vol.spacing, vol.origin, vol.direction)
    ).astype(np.int64)
    shape = np.asarray(vol.shape)
    inside = np.all((flat >= 0) & (flat < shape), axis=1)
    out = np.full(flat.shape[0], fill, dtype=np.int64)
    if inside.any():
        lo = flat[inside].min(axis=0)
        hi = flat[inside].max(axis=0) + 1
        box = np.asarray(vol[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))])
        rel = flat[inside] - lo
        out[inside] = box[rel[:, 0], rel[:, 1], rel[:, 2]]
    return out.reshape(points_mm.shape[:-1])


class _NoduleCrops:
    """Paired baseline / registered follow-up crops of each nodule, with contours."""

    def __init__(self, ar: Any, root: str, b_img: Any, f_img: Any, registered: Any, result: Any):
        self.b_den = ar[f"{root}/baseline/denoised"]
        self.b_sv = ar[f"{root}/baseline/supervoxels"]
        self.f_sv = ar[f"{root}/followup/supervoxels"]
        self.registered = registered
        self.b_img = b_img
        self.result = result
        self.matrix = np.asarray(result.registration["matrix"], dtype=float)
        self.spacing = np.asarray(b_img.spacing, dtype=float)
        self.origin = np.asarray(b_img.origin, dtype=float)
        self.direction = b_img.direction

    def _to_followup(self, pts: np.ndarray) -> np.ndarray:
        m = self.matrix
        return pts @ m[:3, :3].T + m[:3, 3]

    def _to_baseline(self, pts: np.ndarray) -> np.ndarray:
        m = np.linalg.inv(self.matrix)
        return pts @ m[:3, :3].T + m[:3, 3]

    def figure(self, plt: Any, folder: Path, row: dict[str, Any]) -> str:
        from ._geometry import physical_to_index
        from .pipeline.measure import REGION_MIN_HU

        res = self.result
        b = (
            None
            if row["baseline_index"] is None
            else res.detections["baseline"][row["baseline_index"]]
        )
        f = (
            None
            if row["followup_index"] is None
            else res.detections["followup"][row["followup_index"]]
        )
        if b is not None:
            center = np.asarray(b["center_mm"], dtype=float)
        else:
            assert f is not None
            center = self._to_baseline(np.asarray(f["center_mm"], dtype=float)[None])[0]
        shape = np.asarray(self.b_img.shape)
        idx = np.rint(physical_to_index(center, self.spacing, self.origin, self.direction))
        idx = np.clip(idx.astype(int), 0, shape - 1)
        sizes = [d.get("mean_diameter_mm") or d["diameter_mm"] for d in (b, f) if d is not None]
        half_mm = max(15.0, 1.5 * max(sizes))
        hy = int(math.ceil(half_mm / self.spacing[1]))
        hx = int(math.ceil(half_mm / self.spacing[2]))
        z = int(idx[0])
        # the follow-up panel: the baseline-grid slice through the follow-up nodule's
        # centre mapped back with the registration (the same window in y and x)
        zf = z
        fu, style = f, "solid"
        if fu is None and row.get("note"):  # a candidate below the threshold there
            fu, style = self._candidate_near(center), "dashed"
        if fu is not None:
            back = self._to_baseline(np.asarray(fu["center_mm"], dtype=float)[None])[0]
            fi = physical_to_index(back, self.spacing, self.origin, self.direction)
            zf = int(np.clip(np.rint(fi[0]), 0, shape[0] - 1))
        ys = slice(max(0, idx[1] - hy), min(shape[1], idx[1] + hy + 1))
        xs = slice(max(0, idx[2] - hx), min(shape[2], idx[2] + hx + 1))
        left = np.asarray(self.b_den[z, ys, xs], dtype=np.float32)
        right = np.asarray(self.registered[zf, ys, xs], dtype=np.float32)
        rid = str(row["id"])
        # contours: the baseline region on the left; the follow-up region (or the
        # candidate below the threshold at this place) sampled onto the baseline grid.
        m_left = m_right = None
        if b is not None and b.get("labels"):
            sv = np.asarray(self.b_sv[z, ys, xs])
            m_left = np.isin(sv, b["labels"]) & (left >= REGION_MIN_HU)
        if fu is not None and fu.get("labels"):
            from ._geometry import index_to_physical

            grid = np.stack(
                np.meshgrid(
                    np.arange(ys.start, ys.stop), np.arange(xs.start, xs.stop), indexing="ij"
                ),
                axis=-1,
            )
            ijk = np.concatenate([np.full(grid.shape[:-1] + (1,), zf), grid], axis=-1)
            pts = index_to_physical(ijk.astype(float), self.spacing, self.origin, self.direction)
            lab = _sample_nearest(
                self.f_sv, self._to_followup(pts.reshape(-1, 3)).reshape(pts.shape)
            )
            m_right = np.isin(lab, fu["labels"]) & (right >= REGION_MIN_HU)
        panels = [
            _crop_panel(left, m_left, "solid", f"{rid} baseline, slice {z}", self.spacing,
                        self.direction),
            _crop_panel(right, m_right, style, f"{rid} follow-up registered, slice {zf}",
                        self.spacing, self.direction),
        ]  # fmt: skip
        src = _save_panels(panels, folder, f"nodule_{rid}")
        caption = (
            f"{rid}: {row['status']}"
            + (f", {row.get('type')}" if row.get("type") else "")
            + f"; axial slices {z} / {zf} of the baseline grid."
            + (f" {row['note']}." if row.get("note") else "")
        )
        return (
            f"<figure id='crop-{html.escape(rid)}' data-nodule='{html.escape(rid)}'>"
            f"<img src='{html.escape(src)}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def _candidate_near(self, center_b: np.ndarray) -> dict[str, Any] | None:
        cands = self.result.candidates.get("followup", [])
        if not cands:
            return None
        q = self._to_followup(np.asarray(center_b, dtype=float)[None])[0]
        dist = [float(np.linalg.norm(np.asarray(c["center_mm"]) - q)) for c in cands]
        return cands[int(np.argmin(dist))]


_PANEL_PX = 240  # width of a crop panel in pixels (about)
_LIME, _ORANGE, _YELLOW, _CYAN = (50, 255, 50), (255, 160, 0), (255, 230, 0), (0, 230, 255)


def _crop_panel(
    img: np.ndarray,
    mask: np.ndarray | None,
    style: str,
    title: str,
    spacing: np.ndarray,
    direction: Any,
) -> Any:
    """One crop as a PIL image: lung window, voxels enlarged to square-ish pixels of
    equal physical size, the mask's outline (solid or dashed), a 10 mm bar, orientation
    letters from the direction cosines, and a title strip."""
    from PIL import Image, ImageDraw

    lo, hi = LUNG_WINDOW
    ny, nx = img.shape
    fx = max(1, int(round(_PANEL_PX / max(nx, 1))))
    fy = max(1, int(round(fx * float(spacing[1]) / float(spacing[2]))))
    grey = np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo), 0, 1)
    grey = np.repeat(np.repeat((grey * 255).astype(np.uint8), fy, axis=0), fx, axis=1)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    if mask is not None and mask.any():
        big = np.repeat(np.repeat(mask, fy, axis=0), fx, axis=1)
        pad = np.pad(big, 1)
        inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
        edge = big & ~inner
        edge |= np.roll(edge, 1, axis=0) & big  # two pixels wide, inside the region
        if style != "solid":
            yy, xx = np.indices(edge.shape)
            edge &= ((yy + xx) // 4) % 2 == 0
        rgb[edge] = _LIME if style == "solid" else _ORANGE
    h, w = rgb.shape[:2]
    title_h = 16
    canvas = Image.new("RGB", (w, h + title_h), "white")
    canvas.paste(Image.fromarray(rgb), (0, title_h))
    draw = ImageDraw.Draw(canvas)
    font, bold = _fonts()
    draw.text((4, 1), title, fill=(0, 0, 0), font=font)
    # 10 mm scale bar, bottom left
    length = int(round(10.0 / float(spacing[2]) * fx))
    y0, x0 = title_h + h - 10, 8
    draw.rectangle([x0, y0, x0 + length, y0 + 2], fill=_YELLOW)
    _outlined(draw, (x0, y0 - 15), "10 mm", _YELLOW, font)
    # orientation letters (rows = array axis 1, columns = array axis 2)
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    right, left = _axis_letters(d[:, 2])
    bottom, top = _axis_letters(d[:, 1])
    _outlined(draw, (w // 2 - 4, title_h + 2), top, _CYAN, bold)
    _outlined(draw, (w // 2 - 4, title_h + h - 32), bottom, _CYAN, bold)
    _outlined(draw, (3, title_h + h // 2 - 8), left, _CYAN, bold)
    _outlined(draw, (w - 14, title_h + h // 2 - 8), right, _CYAN, bold)
    return canvas


def _fonts() -> tuple[Any, Any]:
    """Fonts of the crop labels: Pillow's own scalable font where it has one (Pillow
    >= 10.1 with FreeType), else its bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=12), ImageFont.load_default(size=15)
    except (TypeError, OSError, ImportError):
        f = ImageFont.load_default()
        return f, f


def _outlined(draw: Any, xy: tuple[int, int], text: str, fill: Any, font: Any) -> None:
    """Text with a dark outline, readable on bright and dark tissue."""
    try:
        draw.text(xy, text, fill=fill, font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    except (TypeError, ValueError):
        draw.text(xy, text, fill=fill, font=font)


def _save_panels(panels: Sequence[Any], folder: Path, name: str, gap: int = 6) -> str:
    """Panels side by side as ``folder/figures/<name>.png``; the relative path."""
    from PIL import Image

    (Path(folder) / "figures").mkdir(parents=True, exist_ok=True)
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    out = Image.new("RGB", (width, max(p.height for p in panels)), "white")
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + gap
    rel = f"figures/{name}.png"
    out.save(Path(folder) / rel, format="PNG", optimize=False)
    return rel
