"""Lung masks on real chest CT: figures and the per-scan table of docs/lung_mask.rst.

Runs :func:`fastct.lungs.lung_mask` on the real scans of ``../shared/realct`` (or the
folder named by ``FASTCT_REALCT``), measures the lung volume, the share of each annotated
lesion inside the mask, leaks (mask voxels above -300 HU or outside the body) and the
time, and writes one PNG per scan (axial and coronal slices with the mask's contour) and
a reStructuredText table (``table.inc``, included by docs/lung_mask.rst).

Usage (from the repository root)::

    .venv/bin/python docs/_scripts/lung_masks.py [--out docs/_static/lungs] [--sagittal]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from fastct.io import read_nifti
from fastct.lungs import lung_mask

ROOT = Path(__file__).resolve().parents[2]
# (scan, lesion annotation, what the annotation is)
SCANS = [
    ("LIDC-IDRI-0001_ct", "LIDC-IDRI-0001_nodules_consensus50", "consensus outline (>= 2 of 4)"),
    ("lung1_ct", "lung1_tumour", "tumour outline"),
    ("Lung_Dx-A0001_lungkernelL_ct", "Lung_Dx-A0001_lungkernelL_tumour_bbox", "tumour bbox"),
    ("Lung_Dx-A0001_softkernelB_ct", "Lung_Dx-A0001_softkernelB_tumour_bbox", "tumour bbox"),
]


def realct_dir() -> Path:
    env = os.environ.get("FASTCT_REALCT")
    return Path(env) if env else ROOT.parent / "shared" / "realct"


def body_mask(image: np.ndarray) -> np.ndarray:
    """Reference body for the leak measure: the largest 3-D component above -500 HU
    (per-slice holes filled), independent of lung_mask's own body."""
    lab, n = ndi.label(image > -500)
    if n == 0:
        return np.zeros(image.shape, bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    body = lab == int(np.argmax(sizes))
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndi.generate_binary_structure(2, 1)
    return ndi.binary_fill_holes(body, structure=st)


def lps(arr: np.ndarray, direction) -> np.ndarray:
    """The array in LPS order (axis 0 S->I... as stored after flips: I->S is kept as is)."""
    from fastct._orient import lps_view

    v = lps_view(arr.shape, (1.0,) * 3, None, direction, exact=False)
    out = np.transpose(arr, v.perm)
    for c, f in enumerate(v.flip):
        if f:
            out = np.flip(out, c)
    return out


def measure(
    name: str, lesion: str, folder: Path, threshold: float | str = -400.0, repeat: int = 2
) -> dict:
    scan = read_nifti(folder / f"{name}.nii.gz")
    img = scan.array
    seconds = float("inf")
    for _ in range(repeat):  # the best of ``repeat`` calls
        t0 = time.perf_counter()
        mask = lung_mask(img, spacing=scan.spacing, direction=scan.direction, threshold=threshold)
        seconds = min(seconds, time.perf_counter() - t0)
    les = read_nifti(folder / f"{lesion}.nii.gz").array > 0
    vox_ml = float(np.prod(scan.spacing)) / 1000.0
    body = body_mask(img)
    idx = np.argwhere(les)
    centre = tuple(int(round(c)) for c in idx.mean(axis=0))
    row = {
        "scan": name,
        "shape": img.shape,
        "spacing": scan.spacing,
        "seconds": seconds,
        "litres": mask.sum() * vox_ml / 1000.0,
        "lesion": lesion,
        "lesion_ml": les.sum() * vox_ml,
        "lesion_inside": float((mask & les).sum() / max(1, les.sum())),
        "lesion_centre_inside": bool(mask[centre]),
        "dense": float((mask & (img > -300)).sum() / max(1, mask.sum())),
        "outside_body": float((mask & ~body).sum() / max(1, mask.sum())),
        "components": int(ndi.label(mask)[1]),
    }
    row["_arrays"] = (img, mask, les, scan)
    return row


def figure(row: dict, path: Path, sagittal: bool = False) -> None:
    from matplotlib.figure import Figure

    img, mask, les, scan = row["_arrays"]
    d = scan.direction
    img_l, mask_l, les_l = (lps(a, d) for a in (img, mask, les))
    from fastct._orient import lps_view

    sp = lps_view(img.shape, scan.spacing, None, d, exact=False).spacing
    zs, ys, xs = np.nonzero(les_l)
    z, y, x = int(np.median(zs)), int(np.median(ys)), int(np.median(xs))
    views = [
        ("axial", img_l[z], mask_l[z], les_l[z], sp[1] / sp[2]),
        ("coronal", img_l[:, y][::-1], mask_l[:, y][::-1], les_l[:, y][::-1], sp[0] / sp[2]),
    ]
    if sagittal:
        views.append(
            (
                "sagittal",
                img_l[:, :, x][::-1],
                mask_l[:, :, x][::-1],
                les_l[:, :, x][::-1],
                sp[0] / sp[1],
            )
        )
    fig = Figure(figsize=(3.2 * len(views), 3.4), dpi=80)
    for i, (title, im, m, le, aspect) in enumerate(views):
        ax = fig.add_subplot(1, len(views), i + 1)
        ax.imshow(im, cmap="gray", vmin=-1200, vmax=400, aspect=aspect, interpolation="nearest")
        if m.any():
            ax.contour(m, levels=[0.5], colors="lime", linewidths=0.8)
        if le.any():
            ax.contour(le, levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"{row['scan']}: {row['litres']:.2f} L", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def table(rows: list[dict]) -> str:
    head = (
        "scan",
        "grid (z, y, x), mm",
        "time s",
        "lungs L",
        "lesion",
        "lesion inside",
        "centre inside",
        "mask > -300 HU",
        "mask outside body",
    )
    lines = []
    for r in rows:
        sp = "x".join(f"{s:.2f}" for s in r["spacing"])
        lines.append(
            (
                r["scan"],
                f"{'x'.join(map(str, r['shape']))}, {sp}",
                f"{r['seconds']:.1f}",
                f"{r['litres']:.2f}",
                f"{r['lesion']} ({r['lesion_ml']:.1f} mL)",
                f"{100 * r['lesion_inside']:.1f} %",
                "yes" if r["lesion_centre_inside"] else "no",
                f"{100 * r['dense']:.2f} %",
                f"{100 * r['outside_body']:.2f} %",
            )
        )
    out = [".. list-table::", "   :header-rows: 1", ""]
    for cells in [head, *lines]:
        out.append("   * - " + cells[0])
        out.extend(f"     - {c}" for c in cells[1:])
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "_static" / "lungs"))
    p.add_argument("--sagittal", action="store_true")
    p.add_argument("--only", default=None, help="substring of the scan names to run")
    p.add_argument("--threshold", default="-400", help="lung_mask's threshold (HU or 'auto')")
    p.add_argument("--repeat", type=int, default=2, help="calls timed per scan (the best)")
    args = p.parse_args(argv)
    folder = realct_dir()
    if not folder.is_dir():
        print(f"no real CT folder at {folder} (set FASTCT_REALCT)", file=sys.stderr)
        return 1
    rows = []
    for name, lesion, _ in SCANS:
        if args.only and args.only not in name:
            continue
        thr = args.threshold if args.threshold == "auto" else float(args.threshold)
        row = measure(name, lesion, folder, thr, args.repeat)
        figure(row, Path(args.out) / f"{name}.png", sagittal=args.sagittal)
        row.pop("_arrays")
        print({k: v for k, v in row.items()}, flush=True)
        rows.append(row)
    text = table(rows)
    (Path(args.out) / "table.inc").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
