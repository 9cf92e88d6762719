"""Nodule measurement (fastct.pipeline.measure) against analytic shapes and a plain loop."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fastct.pipeline.measure import (
    REGION_MIN_HU,
    axial_diameters,
    location,
    lung_extent,
    measure_nodule,
    nodule_type,
)


def _plain_loop_diameters(mask, spacing):
    """Reference: every outline point pair by plain loops (no hull, no vectorising)."""
    sy, sx = spacing
    ny, nx = mask.shape
    pts = set()
    for y in range(ny):
        for x in range(nx):
            if not mask[y, x]:
                continue
            for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                yy, xx = y + dy, x + dx
                if not (0 <= yy < ny and 0 <= xx < nx) or not mask[yy, xx]:
                    pts.add(((y + 0.5 * dy) * sy, (x + 0.5 * dx) * sx))
    pts = sorted(pts)
    best, pair = -1.0, None
    for a in pts:
        for b in pts:
            d = math.hypot(a[0] - b[0], a[1] - b[1])
            if d > best:
                best, pair = d, (a, b)
    (ay, ax), (by, bx) = pair
    uy, ux = (by - ay) / best, (bx - ax) / best
    proj = [-ux * p[0] + uy * p[1] for p in pts]
    return best, max(proj) - min(proj)


def _ellipse(ny, nx, spacing, a_mm, b_mm, angle=0.0):
    """Ellipse of semi-axes a (along the rotated x) and b, rasterised by voxel centres."""
    y = (np.arange(ny) - ny // 2)[:, None] * spacing[0]
    x = (np.arange(nx) - nx // 2)[None, :] * spacing[1]
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    return (u / a_mm) ** 2 + (v / b_mm) ** 2 <= 1.0


@pytest.mark.parametrize(
    "spacing, a, b, angle",
    [
        ((1.0, 1.0), 6.2, 6.2, 0.0),
        ((0.7, 0.7), 9.3, 4.1, 0.0),
        ((0.5, 0.8), 7.7, 3.6, 0.6),  # anisotropic pixels, rotated
        ((1.2, 0.6), 12.4, 8.3, 1.1),
    ],
)
def test_diameters_of_ellipses_analytic_and_plain_loop(spacing, a, b, angle):
    mask = _ellipse(81, 81, spacing, a, b, angle)
    long, short = axial_diameters(mask, spacing)
    ref_long, ref_short = _plain_loop_diameters(mask, spacing)
    assert long == pytest.approx(ref_long, abs=1e-9)
    assert short == pytest.approx(ref_short, abs=1e-9)
    # analytic: 2a and 2b to within about one voxel diagonal
    tol = math.hypot(*spacing)
    assert abs(long - 2 * a) <= tol
    assert abs(short - 2 * b) <= tol


def test_diameters_empty_single_voxel_and_errors():
    assert axial_diameters(np.zeros((4, 4), bool)) == (0.0, 0.0)
    m = np.zeros((5, 5), bool)
    m[2, 2] = True
    long, short = axial_diameters(m, (2.0, 1.0))
    assert long == pytest.approx(2.0) and short == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mask must be 2-D"):
        axial_diameters(np.zeros((2, 2, 2), bool))


def test_measure_sphere_anisotropic_spacing():
    spacing = (2.5, 0.7, 0.7)
    r = 6.0  # mm
    z = (np.arange(15) - 7)[:, None, None] * spacing[0]
    y = (np.arange(41) - 20)[None, :, None] * spacing[1]
    x = (np.arange(41) - 20)[None, None, :] * spacing[2]
    ball = z**2 + y**2 + x**2 <= r**2
    img = np.where(ball, 40.0, -850.0).astype(np.float32)
    region = np.zeros_like(ball)
    region[3:12, 5:36, 5:36] = True  # the supervoxels: the ball and lung around it
    m = measure_nodule(region, img, spacing)
    assert m["type"] == "solid"
    assert m["slice"] == 7  # the equator has the largest area
    assert m["mean_diameter_mm"] == pytest.approx(2 * r, abs=0.7 * 1.5)
    assert m["volume_mm3"] == pytest.approx(ball.sum() * np.prod(spacing))
    assert abs(m["volume_mm3"] - 4 / 3 * math.pi * r**3) < 0.15 * 4 / 3 * math.pi * r**3
    assert np.array_equal(m["mask"], ball & region)
    assert m["solid_mean_diameter_mm"] is None


def test_part_solid_core_and_types():
    spacing = (1.0, 1.0, 1.0)
    zz, yy, xx = np.mgrid[-8:9, -8:9, -8:9].astype(float)
    rr = np.sqrt(zz**2 + yy**2 + xx**2)
    img = np.where(rr <= 7.5, -550.0, -850.0)
    img = np.where(rr <= 2.5, 30.0, img).astype(np.float32)
    m = measure_nodule(np.ones(img.shape, bool), img, spacing)
    assert m["type"] == "part-solid"
    assert m["mean_diameter_mm"] == pytest.approx(15.0, abs=1.5)
    assert m["solid_mean_diameter_mm"] == pytest.approx(5.0, abs=1.5)
    assert (m["mask"] == (img >= REGION_MIN_HU)).all()
    # thresholds at their boundaries
    assert nodule_type([-300.0] * 20) == "ground-glass"  # mean must exceed -300
    assert nodule_type([-299.0] * 20) == "solid"
    assert nodule_type([201.0] * 1 + [30.0] * 9) == "calcified"  # 10% > 200 HU
    assert nodule_type([201.0] * 1 + [30.0] * 10) == "solid"  # 9%
    assert nodule_type([-200.0] * 1 + [-600.0] * 49) == "part-solid"  # 2% solid
    assert nodule_type([-200.0] * 1 + [-600.0] * 50) == "ground-glass"  # 1.96%
    with pytest.raises(ValueError, match="hu"):
        nodule_type([])


def test_location_side_zone_from_a_flipped_mask():
    # LPS: +x = patient left, +z = superior. A direction flipping x puts index 0 at
    # the patient's left: the side must follow the physical x, not the index.
    mask = np.zeros((30, 10, 40), bool)
    mask[3:27, 2:8, 4:36] = True
    flip = np.diag([1.0, 1.0, -1.0])
    ext = lung_extent(mask, (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), flip)
    assert ext["x_min_mm"] == pytest.approx(-34.0) and ext["x_max_mm"] == pytest.approx(-4.0)
    assert location([50.0, 0.0, -10.0], ext) == {"side": "left", "zone": "upper"}
    assert location([10.0, 0.0, -30.0], ext) == {"side": "right", "zone": "lower"}
    assert location([30.0, 0.0, -30.0], ext)["zone"] == "middle"
    assert location([0.0, 0.0, 0.0], None) == {"side": None, "zone": None}
    assert lung_extent(np.zeros((4, 4, 4), bool), (1, 1, 1)) is None


# -- a real chest CT (LIDC-IDRI 0001, the 4-reader nodule) ---------------------------------
def _realct() -> Path:
    import os

    env = os.environ.get("FASTCT_REALCT")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "realct"


def test_real_nodule_measured_like_a_read():
    folder = _realct()
    ct_path = folder / "LIDC-IDRI-0001_ct.nii.gz"
    mask_path = folder / "LIDC-IDRI-0001_nodules_consensus50.nii.gz"
    if not (ct_path.exists() and mask_path.exists()):
        pytest.skip(f"real CT not available in {folder} (set FASTCT_REALCT)")
    from fastct.io import read_nifti

    ct, lab = read_nifti(ct_path), read_nifti(mask_path)
    mask = np.asarray(lab.array) > 0
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0) - 2, idx.max(axis=0) + 3
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    m = measure_nodule(mask[box], np.asarray(ct.array)[box], ct.spacing)
    # a solid mass of about 25 mm (equivalent diameter 24.6 mm, malignancy 4-5)
    assert m["type"] == "solid"
    assert m["long_axis_mm"] >= m["short_axis_mm"] > 0
    assert 18.0 < m["mean_diameter_mm"] < 35.0
    voxel = float(np.prod(ct.spacing))
    assert m["volume_mm3"] <= mask.sum() * voxel and m["volume_mm3"] > 0.8 * mask.sum() * voxel
    k = m["slice"]
    ref = _plain_loop_diameters(m["mask"][k], ct.spacing[1:])
    assert axial_diameters(m["mask"][k], ct.spacing[1:]) == pytest.approx(ref)


@pytest.mark.slow
def test_real_nodule_location_side_and_zone():
    """LIDC-IDRI 0001's nodule (LPS x = +56 mm: the patient's left) from the real lung
    mask's extent, the scan stored as is and flipped to RAS (same physical answer)."""
    ct_path = _realct() / "LIDC-IDRI-0001_ct.nii.gz"
    if not ct_path.exists():
        pytest.skip(f"real CT not available in {ct_path.parent} (set FASTCT_REALCT)")
    from fastct.io import read_nifti
    from fastct.lungs import lung_mask

    ct = read_nifti(ct_path)
    sp, org = np.asarray(ct.spacing, float), np.asarray(ct.origin, float)
    d = np.eye(3) if ct.direction is None else np.asarray(ct.direction, float)
    mask = lung_mask(np.asarray(ct.array), spacing=sp, direction=d)
    center = [-116.0, 86.3, 56.4]  # the readers' centroid, LPS (z, y, x) mm
    ext = lung_extent(mask, sp, org, d)
    assert ext["x_min_mm"] < 0.0 < ext["x_max_mm"]
    # The readers' centroid lies near the upper/middle border of this mask's extent, so the
    # expected zone is derived from the extent by the documented thirds rule (t from the top).
    t = (ext["z_max_mm"] - center[0]) / (ext["z_max_mm"] - ext["z_min_mm"])
    assert 0.2 < t < 0.5  # the nodule is in the upper half of the lungs (coronal figure)
    zone = "upper" if t < 1 / 3 else "middle"
    assert location(center, ext) == {"side": "left", "zone": zone}
    # the same scan stored RAS (y and x flipped): the physical extent does not change
    flip = np.diag([1.0, -1.0, -1.0])
    org_ras = org + d @ (np.array([0, mask.shape[1] - 1, mask.shape[2] - 1]) * sp)
    ext_ras = lung_extent(mask[:, ::-1, ::-1], sp, org_ras, d @ flip)
    assert location(center, ext_ras) == location(center, ext)
    assert abs(ext_ras["x_min_mm"] - ext["x_min_mm"]) <= 2 * sp[2]
