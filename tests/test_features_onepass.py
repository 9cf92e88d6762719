"""The one-pass path of region_features (basic columns) against the general path,
a plain loop and skimage.measure.regionprops_table."""

import numpy as np
import pytest
from test_features import SPACING_3D, make_case

import fastct
from fastct import features as F
from fastct.features import region_features

ORIGIN_3D = (-10.0, 3.0, 0.5)
# Columns the one-pass path serves (inertia eigenvalues, elongation and flatness with
# the second-order coordinate sums).
BASIC = ["count", "volume", "mean", "min", "max", "centroid", "bbox"]
SHAPE = ["inertia_eigvals", "elongation", "flatness"]


def general(labels, image, props, **kw):
    """The same columns through the general path (``surface`` forces it), without it."""
    t = region_features(labels, image, properties=[*props, "surface"], **kw)
    t.pop("surface_mm2" if np.ndim(labels) == 3 else "perimeter_mm")
    return t


def assert_bits_equal(a, b):
    assert a.columns == b.columns
    for col in a.columns:
        x, y = np.asarray(a[col]), np.asarray(b[col])
        assert x.dtype == y.dtype, col
        if x.dtype.kind == "f":  # NaN payloads included
            x, y = x.view(np.int64), y.view(np.int64)
        np.testing.assert_array_equal(x, y, err_msg=col)


def loop_reference(labels, image, spacing, origin):
    """count, mean, min, max, bbox, centroid by a plain Python loop over the regions."""
    ref = {k: [] for k in ("label", "count", "mean", "min", "max", "bmin", "bmax", "cen")}
    img = image.astype(np.float64)
    for lab in np.unique(labels[labels > 0]):
        where = np.nonzero(labels == lab)
        v = img[where]
        ref["label"].append(lab)
        ref["count"].append(v.size)
        ref["mean"].append(v.sum() / v.size)
        ref["min"].append(v.min())
        ref["max"].append(v.max())
        ref["bmin"].append([w.min() for w in where])
        ref["bmax"].append([w.max() + 1 for w in where])
        ref["cen"].append([o + w.mean() * s for w, s, o in zip(where, spacing, origin)])
    return {k: np.array(v) for k, v in ref.items()}


# -- correctness -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.int16, np.uint16, np.uint8, np.int32, np.int64]
)
def test_one_pass_matches_plain_loop_and_general_path(rng, dtype):
    labels, image = make_case((9, 11, 13), rng, n_seeds=20, dtype=np.float64)
    if np.dtype(dtype).kind != "f":  # the full range of small types (summed in int64)
        info = np.iinfo(dtype)
        lo, hi = max(int(info.min), -(2**40)), min(int(info.max), 2**40)
        image = rng.integers(lo, hi, size=labels.shape, endpoint=True)
    image = image.astype(dtype)
    t = region_features(labels, image, spacing=SPACING_3D, origin=ORIGIN_3D, properties=BASIC)
    assert t.columns == general(labels, image, BASIC, spacing=SPACING_3D).columns
    ref = loop_reference(labels, image, SPACING_3D, ORIGIN_3D)
    for col in ("label", "count", "min", "max"):
        np.testing.assert_array_equal(t[col], ref[col], err_msg=col)
    np.testing.assert_allclose(t["mean"], ref["mean"], rtol=1e-12)
    for a, name in enumerate("zyx"):
        np.testing.assert_array_equal(t[f"bbox_min_{name}"], ref["bmin"][:, a])
        np.testing.assert_array_equal(t[f"bbox_max_{name}"], ref["bmax"][:, a])
        np.testing.assert_allclose(t[f"centroid_{name}_mm"], ref["cen"][:, a], rtol=1e-12)
    # bit for bit the general path, shape columns included
    for props in (BASIC, BASIC + SHAPE, ["mean"], ["centroid", "inertia_eigvals"]):
        kw = {"spacing": SPACING_3D, "origin": ORIGIN_3D}
        assert_bits_equal(
            region_features(labels, image, properties=props, **kw),
            general(labels, image, props, **kw),
        )


def test_one_pass_matches_regionprops_table(rng):
    measure = pytest.importorskip("skimage.measure")
    labels, image = make_case((10, 12, 14), rng, n_seeds=25, dtype=np.float64)
    t = region_features(labels, image, spacing=SPACING_3D, properties=BASIC)
    ref = measure.regionprops_table(
        labels,
        image,
        spacing=SPACING_3D,
        properties=("label", "area", "bbox", "centroid", "intensity_mean", "intensity_min",
                    "intensity_max"),
    )  # fmt: skip
    np.testing.assert_array_equal(t["label"], ref["label"])
    np.testing.assert_allclose(t["volume_mm3"], ref["area"], rtol=1e-12)
    np.testing.assert_allclose(t["mean"], ref["intensity_mean"], rtol=1e-12)
    np.testing.assert_array_equal(t["min"], ref["intensity_min"])
    np.testing.assert_array_equal(t["max"], ref["intensity_max"])
    for a, name in enumerate("zyx"):
        np.testing.assert_array_equal(t[f"bbox_min_{name}"], ref[f"bbox-{a}"])
        np.testing.assert_array_equal(t[f"bbox_max_{name}"], ref[f"bbox-{a + 3}"])
        # skimage's centroid with spacing is index centroid * spacing
        np.testing.assert_allclose(t[f"centroid_{name}_mm"], ref[f"centroid-{a}"], rtol=1e-12)


def test_one_pass_2d_and_thin_axes(rng):
    labels, image = make_case((1, 15, 17), rng, n_seeds=9)
    for lab, img in ((labels[0], image[0]), (labels, image), (labels[:, :1], image[:, :1])):
        props = BASIC + [p for p in SHAPE if not (lab.ndim == 2 and p == "flatness")]
        assert_bits_equal(region_features(lab, img, properties=props), general(lab, img, props))


def test_one_pass_nan_and_inf(rng):
    labels, image = make_case((6, 9, 10), rng, n_seeds=8, dtype=np.float32)
    image.flat[rng.choice(image.size, 12, replace=False)] = np.inf
    image.flat[rng.choice(image.size, 12, replace=False)] = -np.inf
    nans = rng.choice(image.size, 6, replace=False)
    image.flat[nans] = np.nan
    # a NaN with another payload and sign bit: min / max keep the region's first NaN
    image.view(np.uint32).flat[nans[:3]] = np.uint32(0xFFC00123)
    with np.errstate(invalid="ignore"):
        t = region_features(labels, image, properties=BASIC)
        assert_bits_equal(t, general(labels, image, BASIC))
    assert np.isnan(t["min"]).any() and np.isinf(t["max"]).any()


# -- determinism, streaming, fallbacks ------------------------------------------------------------
def test_one_pass_threads_slabs_and_streaming(rng, archive_path):
    labels, image = make_case((13, 17, 19), rng, n_seeds=150, dtype=np.float32)
    labels[labels > 0] = labels[labels > 0] // 3  # dense values 1..150, classes of 64
    props = BASIC + SHAPE
    fastct.set_num_threads(1)
    one = region_features(labels, image, spacing=SPACING_3D, properties=props)
    fastct.set_num_threads(2)
    assert_bits_equal(one, region_features(labels, image, spacing=SPACING_3D, properties=props))
    for planes in (1, 2, 5):
        kw = {"spacing": SPACING_3D, "properties": props, "block_planes": planes}
        assert_bits_equal(one, region_features(labels, image, **kw))
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("s/labels", labels, chunks=(4, 5, 6), spacing=SPACING_3D)
        ar.create_volume("s/image", image, chunks=(3, 7, 4), spacing=SPACING_3D)
    with fastct.open(archive_path) as ar:
        lv, iv = ar["s/labels"], ar["s/image"]
        assert_bits_equal(one, region_features(lv, iv, properties=props))
        assert_bits_equal(one, region_features(lv, iv, properties=props, block_planes=3))


def test_one_pass_needs_no_label_scan(rng, monkeypatch):
    """The basic columns come from the one pass: the general path's label scan is not run."""
    labels, image = make_case((5, 6, 7), rng)
    expected = general(labels, image, BASIC)

    def fail(*args, **kwargs):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(F, "_scan_labels", fail)
    assert_bits_equal(region_features(labels, image, properties=BASIC), expected)
    with pytest.raises(AssertionError, match="general path ran"):
        region_features(labels, image, properties=["std"])


def test_one_pass_falls_back_for_large_label_values(rng, monkeypatch):
    labels, image = make_case((8, 9, 10), rng, n_seeds=12)
    base = general(labels, image, BASIC)
    for dtype in (np.uint8, np.int16, np.uint32, np.int64, np.uint64, bool):
        lab = labels.astype(dtype) if dtype is not bool else labels > 0
        ref = general(lab, image, BASIC)
        assert_bits_equal(region_features(lab, image, properties=BASIC), ref)
    # a label value over the row limit in the last slab: the general path, half way through
    late = np.where(labels >= 9_999, 1, labels)
    late[-1, -1, -1] = 5_000
    monkeypatch.setattr(F, "_ONE_PASS_MIN_ROWS", 1000)
    assert late[:-1].max() < 1000 <= late.max()
    expected = general(late, image, BASIC)
    assert_bits_equal(region_features(late, image, properties=BASIC, block_planes=2), expected)
    huge = np.where(labels > 0, labels.astype(np.uint64) + np.uint64(2**62), 0)
    t = region_features(huge, image, properties=BASIC)
    np.testing.assert_array_equal(t["label"], base["label"].astype(np.uint64) + np.uint64(2**62))


def test_one_pass_grows_rows_and_reads_the_slab_again(rng, monkeypatch):
    labels, image = make_case((8, 9, 10), rng, n_seeds=30)
    expected = general(labels, image, BASIC + SHAPE)
    monkeypatch.setattr(F, "_ONE_PASS_FIRST_ROWS", 4)
    for planes in (None, 1, 3):
        for threads in (1, 2):
            fastct.set_num_threads(threads)
            t = region_features(labels, image, properties=BASIC + SHAPE, block_planes=planes)
            assert_bits_equal(t, expected)


def test_one_pass_bad_labels(rng):
    labels, image = make_case((4, 5, 6), rng)
    neg = labels.copy()
    neg[2, 3, 4] = -3
    with pytest.raises(ValueError, match="labels must be >= 0.*-3"):
        region_features(neg, image, properties=BASIC)
    with pytest.raises(ValueError, match="labels has no region"):
        region_features(np.zeros_like(labels), image, properties=BASIC)


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_one_pass_z_parts_continue_the_chains_that_span_a_cut(rng, monkeypatch, parts):
    """The slab is cut along z, one part per thread: labels that span cuts (one over
    every plane, others in non-adjacent parts only, new rows met in a later part) keep
    the bits of one pass in raster order, for any number of parts and slabs."""
    labels, image = make_case((14, 9, 11), rng, n_seeds=40, dtype=np.float32)
    labels[:, 0, :] = 77  # one label in every plane
    labels[1, 2:4, 2:5] = 90  # a label in the first and the last parts only
    labels[-1, 5:7, 3:6] = 90
    labels[-2, 1, 1] = 300  # a row beyond the first rows, in a later part
    image[3, 4, 5] = np.nan  # the first NaN in raster order decides min and max
    image[9, 4, 5] = -np.nan
    props = BASIC + SHAPE
    monkeypatch.setattr(F, "_ONE_PASS_Z_PARTS", 1)
    one = general(labels, image, props, spacing=SPACING_3D)
    assert_bits_equal(region_features(labels, image, spacing=SPACING_3D, properties=props), one)
    monkeypatch.setattr(F, "_ONE_PASS_Z_PARTS", parts)
    monkeypatch.setattr(F, "_ONE_PASS_FIRST_ROWS", 64)
    for planes in (None, 4, 7):
        for threads in (1, 2):
            fastct.set_num_threads(threads)
            t = region_features(
                labels, image, spacing=SPACING_3D, properties=props, block_planes=planes
            )
            assert_bits_equal(t, one)
