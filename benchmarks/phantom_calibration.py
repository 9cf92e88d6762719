"""Calibrate the hard chest phantom against real chest CT (writes docs/phantom_realism figures).

Measures the same quantities on the real scans of ``../shared/realct`` (or ``$FASTCT_REALCT``)
and on hard phantoms (:func:`fastct.datasets.hard_chest_phantom`), and writes a table
(RST, also printed as Markdown), a JSON file and PNG figures:

    python benchmarks/phantom_calibration.py --out docs/_static/phantom --seeds 0-3

Quantities, all measured with the same code on both kinds of scan:

- lung mask: a simple threshold mask of this script (air below -400 HU inside the body,
  not connected to the outside, components larger than 5 % of the largest), eroded by
  one voxel so the pleura does not count;
- parenchyma HU histogram and percentiles inside that mask;
- vessel density: fraction of lung voxels above -500 HU, and vessel calibre: twice the
  median Euclidean distance (mm) at the ridge (local maxima) of the vessel mask;
- noise: standard deviation and in-plane noise power spectrum (NPS) of detrended
  16 x 16 patches in homogeneous soft tissue (patch mean 0-100 HU, lowest-variance quarter
  of the patches of each scan); the NPS centroid (cycles/mm) and the fraction of power
  above 0.3 cycles/mm tell a sharp kernel from a soft one;
- slice thickness (the z spacing of the volume) and the padding value outside the field
  of view (the image minimum when below -1024).

Data: LIDC-IDRI (Armato SG 3rd et al., Med Phys 2011; TCIA, CC BY 3.0), Lung-PET-CT-Dx
(Li P et al., TCIA 2020, CC BY 4.0), and the pyradiomics test scan ``lung1`` (TCIA).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

REAL_SCANS = {
    "LIDC-IDRI-0001": "LIDC-IDRI-0001_ct.nii.gz",
    "lung1": "lung1_ct.nii.gz",
    "Lung_Dx-A0001 sharp (L)": "Lung_Dx-A0001_lungkernelL_ct.nii.gz",
    "Lung_Dx-A0001 soft (B)": "Lung_Dx-A0001_softkernelB_ct.nii.gz",
}
HIST_BINS = np.arange(-1100.0, 101.0, 10.0)


def realct_dir() -> Path | None:
    """The real-CT folder: ``$FASTCT_REALCT`` or ``../shared/realct`` beside the repository."""
    env = os.environ.get("FASTCT_REALCT")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "realct"
    return path if path.is_dir() else None


def load_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(z, y, x) int16 HU and spacing from a NIfTI file (axes flipped to be increasing)."""
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    zooms = img.header.get_zooms()[:3]
    arr = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    return arr.astype(np.int16), (float(zooms[2]), float(zooms[1]), float(zooms[0]))


def simple_lung_mask(image: np.ndarray) -> np.ndarray:
    """Threshold lung mask: air inside the body, not connected to the volume's border."""
    air = image < -400
    # Outside air: connected to the border of each axial slice.
    lab, _ = ndimage.label(air)
    border = np.unique(
        np.concatenate(
            [lab[:, 0].ravel(), lab[:, -1].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()]
        )
    )
    inside = air & ~np.isin(lab, border)
    lab, n = ndimage.label(inside)
    if n == 0:
        return inside
    sizes = ndimage.sum_labels(inside, lab, index=np.arange(1, n + 1))
    keep = np.flatnonzero(sizes >= 0.05 * sizes.max()) + 1
    mask = np.isin(lab, keep)
    # Fill vessels and nodules inside the lungs slice by slice, then trim the pleura.
    for k in range(mask.shape[0]):
        mask[k] = ndimage.binary_fill_holes(mask[k])
    return ndimage.binary_erosion(mask, iterations=1)


def parenchyma_stats(image: np.ndarray, lung: np.ndarray, spacing) -> dict:
    vals = image[lung].astype(np.float64)
    hist, _ = np.histogram(vals, bins=HIST_BINS)
    vessel = lung & (image > -500)
    calibre = float("nan")
    if vessel.any():
        edt = ndimage.distance_transform_edt(vessel, sampling=spacing)
        ridge = vessel & (edt >= ndimage.maximum_filter(edt, size=3))
        calibre = float(2.0 * np.median(edt[ridge]))
    p = np.percentile(vals, [5, 25, 50, 75, 95])
    return {
        "lung_voxels": int(vals.size),
        "lung_p5": float(p[0]),
        "lung_p25": float(p[1]),
        "lung_median": float(p[2]),
        "lung_p75": float(p[3]),
        "lung_p95": float(p[4]),
        "vessel_fraction": float(np.count_nonzero(vessel) / max(1, vals.size)),
        "vessel_calibre_mm": calibre,
        "hist": (hist / max(1, vals.size)).tolist(),
    }


def noise_stats(image: np.ndarray, spacing, patch: int = 16, max_slices: int = 24) -> dict:
    """Noise std and radial NPS from homogeneous soft-tissue patches."""
    nz = image.shape[0]
    ks = np.linspace(nz * 0.3, nz * 0.7, min(max_slices, nz)).astype(int)
    patches = []
    for k in np.unique(ks):
        sl = image[k].astype(np.float64)
        ny, nx = sl.shape
        for j in range(0, ny - patch, patch // 2):
            for i in range(0, nx - patch, patch // 2):
                p = sl[j : j + patch, i : i + patch]
                m = p.mean()
                if 0.0 <= m <= 100.0 and p.min() > -150 and p.max() < 250:
                    # Detrend with a plane fit: removes slow anatomy gradients.
                    yy, xx = np.mgrid[0:patch, 0:patch]
                    a = np.column_stack([np.ones(patch * patch), yy.ravel(), xx.ravel()])
                    coef, *_ = np.linalg.lstsq(a, p.ravel(), rcond=None)
                    patches.append(p - (a @ coef).reshape(patch, patch))
    if not patches:
        return {
            "noise_std": float("nan"),
            "nps_centroid": float("nan"),
            "nps_high_fraction": float("nan"),
        }
    arr = np.stack(patches)
    var = arr.reshape(len(arr), -1).var(axis=1)
    sel = arr[var <= np.quantile(var, 0.25)]
    std = float(np.sqrt(np.mean(sel.reshape(len(sel), -1).var(axis=1))))
    f = np.abs(np.fft.fft2(sel)) ** 2
    nps = f.mean(axis=0)
    fy = np.fft.fftfreq(patch, d=spacing[1])
    fx = np.fft.fftfreq(patch, d=spacing[2])
    fr = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    nps[0, 0] = 0.0
    centroid = float((nps * fr).sum() / nps.sum())
    high = float(nps[fr > 0.3].sum() / nps.sum())
    nyq = 0.5 / min(spacing[1], spacing[2])
    edges = np.linspace(0.0, nyq, 13)
    radial = [
        float(nps[(fr >= a) & (fr < b)].mean()) if np.any((fr >= a) & (fr < b)) else 0.0
        for a, b in zip(edges[:-1], edges[1:])
    ]
    return {
        "noise_std": std,
        "noise_patches": int(len(sel)),
        "nps_centroid": centroid,
        "nps_high_fraction": high,
        "nps_radial_f": (0.5 * (edges[:-1] + edges[1:])).tolist(),
        "nps_radial": (np.asarray(radial) / max(1e-12, sum(radial))).tolist(),
    }


def measure(image: np.ndarray, spacing, lung: np.ndarray | None = None) -> dict:
    lung = simple_lung_mask(image) if lung is None else lung
    out = {
        "shape": list(image.shape),
        "spacing": list(spacing),
        "slice_thickness": float(spacing[0]),
    }
    out["min_hu"] = int(image.min())
    out.update(parenchyma_stats(image, lung, spacing))
    out.update(noise_stats(image, spacing))
    return out


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="docs/_static/phantom", help="folder for PNG, JSON, Markdown")
    ap.add_argument("--seeds", default="0-3", help="hard phantom seeds, e.g. 0-3")
    ap.add_argument("--size", default="small", help="hard phantom size preset (in-plane grid)")
    ap.add_argument("--no-real", action="store_true", help="skip the real scans")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    views: dict[str, np.ndarray] = {}
    real = None if args.no_real else realct_dir()
    if real is not None:
        for name, fname in REAL_SCANS.items():
            t = time.perf_counter()
            img, spc = load_nifti(real / fname)
            results[name] = {"kind": "real", **measure(img, spc)}
            views[name] = img[int(img.shape[0] * 0.55)]
            print(f"{name}: {time.perf_counter() - t:.1f} s", flush=True)
    from fastct.datasets import hard_chest_phantom

    combos = [("sharp", 1.25), ("soft", 5.0), ("sharp", 2.5), ("soft", 2.5)]
    for s in _seeds(args.seeds):
        recon, thick = combos[s % len(combos)]
        t = time.perf_counter()
        ph = hard_chest_phantom(args.size, seed=s, recon_kernel=recon, slice_thickness=thick)
        gen = time.perf_counter() - t
        name = f"hard phantom seed {s} ({recon}, {thick:g} mm)"
        results[name] = {"kind": "phantom", "generation_s": gen, **measure(ph.image, ph.spacing)}
        views[name] = ph.image[int(ph.image.shape[0] * 0.55)]
        print(f"{name}: generated in {gen:.1f} s", flush=True)
    (out / "calibration.json").write_text(json.dumps(results, indent=1))
    write_table(results, out / "calibration_table.txt")
    write_figures(results, out)
    write_views(views, out / "slices.png")
    write_gallery(out / "nodules.png", args.size)
    return 0


TABLE_HEAD = [
    "scan",
    "slice mm",
    "min HU",
    "lung median HU",
    "lung p5 to p95 HU",
    "vessel fraction",
    "vessel calibre mm",
    "noise std HU",
    "NPS centroid c/mm",
    "NPS power > 0.3 c/mm",
]


def table_rows(results: dict) -> list[list[str]]:
    return [
        [
            name,
            f"{r['slice_thickness']:.2f}",
            str(r["min_hu"]),
            f"{r['lung_median']:.0f}",
            f"{r['lung_p5']:.0f} to {r['lung_p95']:.0f}",
            f"{r['vessel_fraction']:.3f}",
            f"{r['vessel_calibre_mm']:.1f}",
            f"{r['noise_std']:.1f}",
            f"{r['nps_centroid']:.3f}",
            f"{r['nps_high_fraction']:.2f}",
        ]
        for name, r in results.items()
    ]


def write_table(results: dict, path: Path) -> None:
    """The table as an RST list-table (a ``.txt`` file, so that Sphinx only includes it)."""
    rst = [".. list-table::", "   :header-rows: 1", ""]
    for row in [TABLE_HEAD, *table_rows(results)]:
        rst.append("   * - " + row[0])
        rst += [f"     - {v}" for v in row[1:]]
    path.write_text("\n".join(rst) + "\n")
    print("\n".join("| " + " | ".join(r) + " |" for r in [TABLE_HEAD, *table_rows(results)]))


def write_figures(results: dict, out: Path) -> None:
    from matplotlib.figure import Figure

    centres = 0.5 * (HIST_BINS[:-1] + HIST_BINS[1:])
    fig = Figure(figsize=(7.0, 4.0), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    for name, r in results.items():
        ax.plot(centres, r["hist"], ls="-" if r["kind"] == "real" else "--", label=name)
    ax.set_xlabel("HU inside the lung mask")
    ax.set_ylabel("fraction of lung voxels per 10 HU")
    ax.set_yscale("log")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "lung_histogram.png")

    fig = Figure(figsize=(7.0, 4.0), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    for name, r in results.items():
        if "nps_radial" in r:
            ax.plot(
                r["nps_radial_f"],
                r["nps_radial"],
                ls="-" if r["kind"] == "real" else "--",
                label=name,
            )
    ax.set_xlabel("radial spatial frequency (cycles/mm)")
    ax.set_ylabel("normalised NPS")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "nps.png")


def write_views(views: dict[str, np.ndarray], path: Path) -> None:
    from matplotlib.figure import Figure

    n = len(views)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.0 * cols, 3.2 * rows), dpi=100)
    for k, (name, sl) in enumerate(views.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(sl, cmap="gray", vmin=-1200, vmax=300, interpolation="nearest")
        ax.set_title(name, fontsize=7)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)


def write_gallery(path: Path, size: str) -> None:
    """Axial crops through hard-phantom nodules: every type, shape and position."""
    from matplotlib.figure import Figure

    from fastct.datasets import hard_chest_phantom

    types = ["solid", "ground-glass", "part-solid", "calcified"] * 2
    shapes = [
        "round",
        "lobulated",
        "spiculated",
        "round",
        "spiculated",
        "round",
        "lobulated",
        "round",
    ]
    positions = ["free", "juxtapleural", "juxtavascular", "perifissural"] * 2
    ph = hard_chest_phantom(
        size,
        seed=7,
        n_nodules=8,
        nodule_types=types,
        nodule_shapes=shapes,
        nodule_positions=positions,
        diameter_range=(8.0, 20.0),
        slice_thickness=1.25,
        recon_kernel="soft",
    )
    fig = Figure(figsize=(12.0, 2.5), dpi=100)
    for k, n in enumerate(ph.nodules):
        z, y, x = ph.index_of(n.center_mm)
        half = int(round(25.0 / ph.spacing[1]))
        crop = ph.image[z, max(0, y - half) : y + half, max(0, x - half) : x + half]
        lab = ph.nodule_labels[z, max(0, y - half) : y + half, max(0, x - half) : x + half]
        ax = fig.add_subplot(1, len(ph.nodules), k + 1)
        ax.imshow(crop, cmap="gray", vmin=-1000, vmax=200, interpolation="nearest")
        if (lab == n.id).any():
            ax.contour(lab == n.id, [0.5], colors="r", linewidths=0.6)
        ax.set_title(
            f"{n.type}\n{n.shape}, {n.position}\n{n.mean_axial_diameter_mm:.1f} mm", fontsize=7
        )
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    raise SystemExit(main())
