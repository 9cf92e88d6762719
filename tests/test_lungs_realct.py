"""lung_mask on real chest CT with expert annotations (../shared/realct or $FASTCT_REALCT).

Skipped where the folder is absent (a fresh clone). The bounds are anatomical (a
lung volume, no dense tissue or outside air in the mask, the trachea out, outlined
nodules in), not values tuned to one scan.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi

from fastct.lungs import lung_mask

pytestmark = pytest.mark.slow


def _realct() -> Path:
    env = os.environ.get("FASTCT_REALCT")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "realct"


REALCT = _realct()
needs_realct = pytest.mark.skipif(
    not (REALCT / "lung1_ct.nii.gz").is_file(),
    reason=f"real chest CT not available at {REALCT} (set FASTCT_REALCT)",
)

# scan, annotation, least fraction of the annotation inside the mask (None: a loose
# bounding box around a hilar mass, mostly mediastinum: only overlap is required)
SCANS = [
    ("LIDC-IDRI-0001_ct", "LIDC-IDRI-0001_nodules_consensus50", 0.95),
    ("lung1_ct", "lung1_tumour", 0.95),
    ("Lung_Dx-A0001_lungkernelL_ct", "Lung_Dx-A0001_lungkernelL_tumour_bbox", None),
    ("Lung_Dx-A0001_softkernelB_ct", "Lung_Dx-A0001_softkernelB_tumour_bbox", None),
]


def read(name):
    from fastct.io import read_nifti

    return read_nifti(REALCT / f"{name}.nii.gz")


def reference_body(image):
    """Largest component above -500 HU, per-slice holes filled (independent of lung_mask)."""
    lab, _ = ndi.label(image > -500)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndi.generate_binary_structure(2, 1)
    return ndi.binary_fill_holes(lab == np.argmax(sizes), structure=st)


def trachea_near_top(image, spacing, n_slices=8):
    """The trachea's cross-sections in the top ``n_slices`` (superior end, identity
    direction): central blobs below -900 HU of 50..900 mm2, or None."""
    out = np.zeros(image.shape, bool)
    for z in range(image.shape[0] - n_slices, image.shape[0]):
        lab, n = ndi.label(image[z] < -900)
        areas = np.bincount(lab.ravel()) * spacing[1] * spacing[2]
        cx = (image.shape[2] - 1) / 2
        for i in range(1, n + 1):
            if 50 <= areas[i] <= 900:
                blob = lab == i
                if abs(np.nonzero(blob)[1].mean() - cx) * spacing[2] < 30:
                    out[z] |= blob
    return out if out.any() else None


@needs_realct
@pytest.mark.parametrize("name, lesion, least", SCANS, ids=[s[0] for s in SCANS])
def test_real_scan(name, lesion, least):
    scan = read(name)
    img = scan.array
    mask = lung_mask(img, spacing=scan.spacing, direction=scan.direction)
    vox_ml = float(np.prod(scan.spacing)) / 1000.0
    litres = mask.sum() * vox_ml / 1000.0
    assert 1.5 <= litres <= 8.0, litres
    # no leak into the table, the outside air or the abdomen's soft tissue
    assert np.mean(img[mask] > -300) < 0.05
    assert not (mask & ~reference_body(img)).any()
    # every component is a lung (or a fragment touching one diagonally), at most two big ones
    sizes = np.bincount(ndi.label(mask)[0].ravel())[1:] * vox_ml
    assert (sizes > 100).sum() in (1, 2), sizes
    # the trachea is not in the mask
    trachea = trachea_near_top(img, scan.spacing)
    assert trachea is not None and not (mask & trachea).any()
    les = read(lesion).array > 0
    inside = (mask & les).sum() / les.sum()
    if least is not None:
        assert inside >= least, inside
    else:
        assert inside >= 0.1, inside


@needs_realct
def test_real_scan_padding_flips_and_streaming(tmp_path):
    """lung1 with -3024 HU padding outside a field-of-view circle that clips the body
    (not the lungs: lung1 is cropped so tightly that its lungs reach the inscribed
    circle), stored flipped (with the matching direction): the same mask (Dice);
    streamed from an archive: the same bits."""
    import fastct

    scan = read("lung1_ct")
    img = scan.array
    ref = lung_mask(img, spacing=scan.spacing)
    ny, nx = img.shape[1:]
    yy, xx = np.mgrid[:ny, :nx]
    r = np.hypot(yy - ny / 2, xx - nx / 2)
    fov = r > r[ref.any(axis=0)].max() + 5.0 / scan.spacing[2]  # 5 mm outside the lungs
    assert ((img > -500) & fov).sum() > 0.02 * (img > -500).sum()  # the body is clipped
    padded = img.copy()
    padded[:, fov] = -3024
    got = lung_mask(padded, spacing=scan.spacing)
    d = 2 * (got & ref).sum() / (got.sum() + ref.sum())
    assert d >= 0.99, d
    flipped = np.ascontiguousarray(img[::-1, :, ::-1])
    direction = np.diag([-1.0, 1.0, -1.0])
    got = lung_mask(flipped, spacing=scan.spacing, direction=direction)[::-1, :, ::-1]
    # not bit-equal: the 3 x 3 working blocks (1.7 mm) of a 512-wide slice fall 2 voxels
    # apart, which moves the lungs' surface by up to a block
    d = 2 * (got & ref).sum() / (got.sum() + ref.sum())
    assert d >= 0.98, d
    path = tmp_path / "lung1.h5"
    with fastct.open(path, "w") as ar:
        ar.create_volume("img", img, spacing=scan.spacing, chunks=(8, 128, 128))
    with fastct.open(path, "a") as ar:
        out = ar.create_volume_like("mask", ar["img"], dtype=np.uint8)
        lung_mask(ar["img"], out=out)
    with fastct.open(path) as ar:
        np.testing.assert_array_equal(ar["mask"].read().astype(bool), ref)
