"""lung_mask against what real scanners add to the phantom: field-of-view padding,
a hollow CT table, lungs touching at the anterior junction, gas under the diaphragm,
emphysema. The reference is the mask of the clean phantom (and the phantom's truth)."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from fastct import datasets
from fastct.lungs import _unpad, lung_mask, optimal_threshold


def dice(a, b):
    return 2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b))


@pytest.fixture(scope="module")
def ph():
    return datasets.chest_phantom("small", seed=1)


@pytest.fixture(scope="module")
def clean(ph):
    return lung_mask(ph.image, spacing=ph.spacing)


def with_fov(image, value, fraction):
    """Everything outside a centred circle of ``fraction`` of the half-width set to ``value``."""
    ny, nx = image.shape[1:]
    yy, xx = np.mgrid[:ny, :nx]
    r = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2)
    out = image.copy()
    out[:, r > fraction * min(ny, nx) / 2] = value
    return out


def with_table(image, gap=2):
    """A hollow table (+50..+300 HU shell around air) ``gap`` voxels under the body."""
    out = image.copy()
    ny, nx = image.shape[1:]
    bottom = int(np.flatnonzero((image > -500).any(axis=(0, 2)))[-1])
    y0 = bottom + 1 + gap
    y1 = min(ny - 1, y0 + 12)
    rng = np.random.default_rng(0)
    out[:, y0:y1, 6 : nx - 6] = rng.integers(50, 300, size=(image.shape[0], y1 - y0, nx - 12))
    out[:, y0 + 2 : y1 - 2, 8 : nx - 8] = -1000
    return out


def fused(image, lung, zs=range(25, 45)):
    """The two lungs joined by a strip of parenchyma (the anterior junction)."""
    out = image.copy()
    for z in zs:
        y = int(np.argmax(lung[z].sum(axis=1)))
        xs = np.flatnonzero(lung[z, y])
        gap = np.flatnonzero(np.diff(xs) > 1)
        out[z, y - 3 : y + 4, xs[gap[0]] : xs[gap[0] + 1] + 1] = -850
    return out


def emphysema(image, lung):
    """Lung parenchyma shifted down by 105 HU (about -950 HU)."""
    out = image.copy()
    par = lung & (image < -500)
    out[par] = np.maximum(out[par] - 105, -1024)
    return out


@pytest.mark.parametrize(
    "value, fraction", [(-2048, 1.0), (-3024, 0.86), (-3024, 0.98), (0, 0.98), (-1000, 0.98)]
)
def test_fov_padding(ph, clean, value, fraction):
    """Padding outside the field of view, also clipping the body (0.86) and enclosing the
    air around it (0.98: the padding ring touches no border; with 0 HU padding that air
    would be interior air but for the corner test)."""
    img = with_fov(ph.image, value, fraction)
    mask = lung_mask(img, spacing=ph.spacing)
    assert dice(mask, clean) >= 0.99
    assert dice(mask, ph.lung_mask) >= 0.98


def test_unpad_by_value_and_by_corners():
    img = np.full((2, 6, 7), -1000.0, np.float32)
    img[:, 2:4, 2:5] = 40.0
    img[0, 0, :] = -3024.0  # by value
    img[1][[0, 0, -1, -1], [0, -1, 0, -1]] = 0.0  # corners of slice 1: padding of 0 HU
    img[1, 0, 1] = 0.0  # connected to a corner
    img[1, 3, 3] = 0.0  # same value inside the body: kept
    got = _unpad(img)
    assert got is not img and img[0, 0, 0] == -3024.0  # input untouched
    ref = img.copy()
    ref[0, 0, :] = -1024.0
    ref[1][[0, 0, -1, -1], [0, -1, 0, -1]] = -1024.0
    ref[1, 0, 1] = -1024.0
    np.testing.assert_array_equal(got, ref)
    # corners that differ (a real image) are left alone
    img[1, 0, 0] = 1.0
    assert _unpad(img)[1, 0, 0] == 1.0


@pytest.mark.parametrize("gap", [2, 0])
def test_hollow_table_with_fused_lungs(ph, clean, gap):
    """With the lungs joined, the table's air (a second large enclosed component) must
    not be taken for the other lung; the body is the largest non-air component."""
    img = with_table(fused(ph.image, ph.lung_mask), gap=gap)
    truth = clean | (fused(ph.image, ph.lung_mask) != ph.image)
    mask = lung_mask(img, spacing=ph.spacing)
    assert dice(mask, truth) >= 0.99
    table_rows = np.arange(img.shape[1]) > np.flatnonzero((ph.image > -500).any(axis=(0, 2)))[-1]
    assert not mask[:, table_rows].any()


def test_gas_under_fused_lungs_dropped(ph, clean):
    """Gas in the stomach (below the lung bases, > min_lung_fraction of the lungs) is not
    a second lung: it does not reach the lungs' mid-height."""
    img = fused(ph.image, ph.lung_mask)
    truth = clean | (img != ph.image)
    gas = np.zeros(img.shape, bool)
    gas[4:13, 55:90, 70:100] = True
    img[gas] = -1000
    assert gas.sum() > 0.1 * truth.sum()
    mask = lung_mask(img, spacing=ph.spacing)
    assert not (mask & gas).any()
    assert dice(mask, truth) >= 0.99


def test_gas_bubble_at_the_other_end_is_not_the_trachea(ph):
    """A round central gas pocket in the bottom slices (bowel), nearer its end than the
    first trachea-sized blob is to the top (the top slices' lumen is narrowed here), is
    not the trachea: it is not part of the lungs' air column."""
    img = ph.image.copy()
    scene = datasets.ChestScene.generate(1)
    trachea = ph.index_of(scene.landmarks["trachea"])
    top = img[-3:, :, 44:84]
    top[top < -400] = 40  # the trachea's top 3 slices narrowed to a 1-voxel lumen
    img[-3:, trachea[1], trachea[2]] = -1000
    expected = lung_mask(img, spacing=ph.spacing)
    yy, xx = np.mgrid[: img.shape[1], : img.shape[2]]
    img[0:7, (yy - 70) ** 2 + (xx - 64) ** 2 <= 25] = -1000
    mask = lung_mask(img, spacing=ph.spacing)
    assert not mask[trachea]
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("working_mm", [1.5, 6.0])
def test_emphysema_and_everything(ph, working_mm):
    """Emphysema (-950 HU parenchyma), padding, a table and joined lungs at once, at the
    default and at a coarse working grid: Dice >= 0.95 with the clean mask, trachea out,
    nodules in."""
    clean = lung_mask(ph.image, spacing=ph.spacing, working_mm=working_mm)
    img = emphysema(ph.image, ph.lung_mask)
    assert np.median(img[ph.lung_mask]) < -930
    img = with_table(with_fov(fused(img, ph.lung_mask), -3024, 0.98))
    mask = lung_mask(img, spacing=ph.spacing, working_mm=working_mm)
    assert dice(mask, clean) >= 0.95
    scene = datasets.ChestScene.generate(1)
    assert not mask[ph.index_of(scene.landmarks["trachea"])]
    nodules = ph.nodule_labels > 0
    assert np.sum(mask & nodules) >= 0.99 * np.sum(nodules)
    assert ndi.label(mask)[1] == 1  # joined lungs stay one component


def test_optimal_threshold_equals_plain_loop():
    rng = np.random.default_rng(3)
    values = np.r_[rng.normal(-870, 40, 3000), rng.normal(30, 60, 9000), [1500.0, -3000.0]]
    t = -400.0
    clipped = [min(max(v, -1024.0), 200.0) for v in values]
    for _ in range(100):
        lo = [v for v in clipped if v < t]
        hi = [v for v in clipped if v >= t]
        new = (sum(lo) / len(lo) + sum(hi) / len(hi)) / 2
        if abs(new - t) < 0.5:
            t = new
            break
        t = new
    assert optimal_threshold(values) == pytest.approx(t, abs=1e-9)
    assert optimal_threshold(np.full(5, 40.0)) == -400.0  # one class only: the start


def test_auto_threshold_follows_the_lungs(ph, clean):
    """threshold='auto' gives the default's mask on the phantom and on emphysema."""
    auto = lung_mask(ph.image, spacing=ph.spacing, threshold="auto")
    assert dice(auto, clean) >= 0.995
    img = emphysema(ph.image, ph.lung_mask)
    assert dice(lung_mask(img, spacing=ph.spacing, threshold="auto"), clean) >= 0.99
    body = ph.image > -500
    assert optimal_threshold(img[body | ph.lung_mask]) < optimal_threshold(
        ph.image[body | ph.lung_mask]
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"threshold": "auto", "method": "threshold"}, "threshold='auto' needs method="),
        ({"threshold": "auto", "airway_threshold": -550.0}, "below the lowest 'auto'"),
    ],
)
def test_auto_threshold_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lung_mask(np.zeros((4, 5, 6), np.int16), **kwargs)
