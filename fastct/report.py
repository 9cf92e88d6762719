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
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eee; } td.l { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #555; }
.summary li { margin: 0.2em 0; }
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


def save_figure(fig: Any, folder: str | os.PathLike, name: str, *, dpi: int = 90) -> str:
    """Save a matplotlib figure as ``folder/figures/<name>.png``; return the relative path.

    A figure made with pyplot is closed afterwards (pyplot's own ``close``, only when the
    caller has imported pyplot); a plain ``Figure`` needs no closing. The global
    matplotlib backend is never changed.
    """
    folder = Path(folder)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    rel = f"figures/{name}.png"
    try:
        fig.savefig(folder / rel, dpi=dpi, bbox_inches="tight", format="png")
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

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("src", "href", "srcset", "data", "poster") and value is not None:
                self.refs.append((tag, key, value))
            if key == "style" and value:
                self.styles.append(value)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

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
    to a remote resource (``http:``, ``https:``, ``ftp:``, ``//host``).

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
    blocks: list[str] = [_summary_html(result)]

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
    blocks.append("<h2>Detections</h2>")
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

    # 6. growth table.
    blocks.append("<h2>Nodules and growth</h2>")
    interval = (
        f"{result.interval_days:g} days" if result.interval_days else "unknown (no doubling times)"
    )
    blocks.append(f"<p>Interval between the scans: {interval}.</p>")
    blocks.append(
        html_table(
            result.nodules,
            [
                ("nodule", "nodule", "d"),
                ("status", "status", ""),
                ("change", "change", ""),
                ("diameter_baseline_mm", "diameter 1 (mm)", ".1f"),
                ("diameter_followup_mm", "diameter 2 (mm)", ".1f"),
                ("volume_baseline_mm3", "volume 1 (mm³)", ".0f"),
                ("volume_followup_mm3", "volume 2 (mm³)", ".0f"),
                ("volume_change_pct", "change (%)", "+.0f"),
                ("doubling_time_days", "VDT (days)", ".0f"),
                ("probability_baseline", "p 1", ".2f"),
                ("probability_followup", "p 2", ".2f"),
                ("distance_mm", "match distance (mm)", ".1f"),
            ],
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
    return write_html(folder, f"fastct longitudinal report: run {result.run_name}", blocks)


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


def _summary_html(result: Any) -> str:
    items = [
        f"Archive: {html.escape(result.archive.name)}, results under "
        f"<code>/results/{html.escape(result.run_name)}/</code>",
        f"Baseline grid: {' x '.join(map(str, result.shape))} voxels, spacing "
        f"{' x '.join(f'{s:g}' for s in result.spacing)} mm",
        f"Detections: {len(result.detections['baseline'])} baseline, "
        f"{len(result.detections['followup'])} follow-up; "
        f"{sum(1 for r in result.nodules if r['status'] == 'matched')} matched",
        f"Registration: {result.registration['transform']}, scale "
        f"{result.registration['scale']:.4f}",
        f"Total time: {sum(result.timings.values()):.1f} s",
    ]
    if result.truth is not None:
        t = result.truth
        items.append(
            f"Ground truth: registration error {t['registration_error_mm']:.3f} mm; found "
            f"{t['baseline']['found']}/{t['baseline']['total']} (baseline) and "
            f"{t['followup']['found']}/{t['followup']['total']} (follow-up) nodules >= 5 mm"
        )
    return "<ul class='summary'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
