"""Region features and the region adjacency graph against scipy / skimage / NumPy."""

import numba
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import ref_adjacency, ref_faces
from naive import region_features_reference as reference

import fastct
from fastct import features as F
from fastct.features import FeatureTable, region_adjacency, region_features

SPACING_3D = (2.5, 0.7, 1.1)
ORIGIN_3D = (-10.0, 3.0, 0.5)


# -- test data ---------------------------------------------------------------------------------
def voronoi_labels(shape, n_seeds, rng, *, background=0.15, scale=3):
    """Voronoi cells of random seeds with sparse label values, some background, a few
    one-voxel regions and one region split in two pieces."""
    seeds = np.zeros(shape, dtype=np.int64)
    flat = rng.choice(seeds.size, size=n_seeds, replace=False)
    seeds.flat[flat] = np.arange(1, n_seeds + 1) * scale
    _, idx = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[tuple(idx)]
    labels[rng.random(shape) < background] = 0
    singles = rng.choice(labels.size, size=3, replace=False)
    labels.flat[singles] = 10_000 + np.arange(3)
    labels.flat[0] = labels.flat[-1] = 9_999  # one region in two far-apart pieces
    return labels


def make_case(shape, rng, n_seeds=12, dtype=np.float32):
    labels = voronoi_labels(shape, n_seeds, rng).astype(np.int32)
    image = (rng.normal(size=shape) * 100).astype(dtype)
    return labels, image


def assert_matches_reference(table, ref, ndim):
    axes = "zyx"[-ndim:]
    exact = ["label", "count"] + [f"bbox_{m}_{a}" for m in ("min", "max") for a in axes]
    exact += ["min", "max", "n_neighbors"] + [c for c in table if c[0] == "p" and c[1].isdigit()]
    for col in exact:
        np.testing.assert_array_equal(table[col], ref[col], err_msg=col)
    for a in axes:
        np.testing.assert_array_equal(table[f"bbox_min_{a}"], ref[f"sk_bbox_min_{a}"])
        np.testing.assert_array_equal(table[f"bbox_max_{a}"], ref[f"sk_bbox_max_{a}"])
        np.testing.assert_allclose(table[f"centroid_{a}_mm"], ref[f"sk_centroid_{a}"], rtol=1e-12)
    size = "volume_mm3" if ndim == 3 else "area_mm2"
    np.testing.assert_allclose(table[size], ref["sk_area"], rtol=1e-12)
    close = {
        "mean": 1e-12,
        "std": 1e-10,
        "skewness": 1e-8,
        "kurtosis": 1e-8,
        "elongation": 1e-9,
        "sphericity": 1e-12,
        "gradient_mean": 1e-12,
        "contrast": 1e-9,
        size: 1e-12,
        ("surface_mm2" if ndim == 3 else "perimeter_mm"): 1e-12,
    }
    close.update({f"centroid_{a}_mm": 1e-12 for a in axes})
    if ndim == 3:
        close["flatness"] = 1e-9
    for col, rtol in close.items():
        # sqrt(l2 / l1) of a (near-)degenerate region carries sqrt(eps) absolute error
        atol = 1e-7 if col in ("elongation", "flatness") else 1e-12
        np.testing.assert_allclose(table[col], ref[col], rtol=rtol, atol=atol, err_msg=col)
    scale = np.max(np.abs(ref["inertia_eig_0"]))
    for k in range(ndim):
        np.testing.assert_allclose(
            table[f"inertia_eig_{k}"], ref[f"inertia_eig_{k}"], rtol=1e-9, atol=1e-12 * scale
        )


def assert_tables_identical(a, b):
    assert a.columns == b.columns
    for col in a.columns:
        assert a[col].dtype == b[col].dtype, col
        np.testing.assert_array_equal(a[col], b[col], err_msg=col)  # NaN == NaN here


# -- correctness -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.float64])
def test_3d_matches_references(rng, dtype):
    labels, image = make_case((13, 17, 19), rng, dtype=dtype)
    table = region_features(labels, image, spacing=SPACING_3D, origin=ORIGIN_3D)
    ref = reference(labels, image, SPACING_3D, ORIGIN_3D)
    assert_matches_reference(table, ref, 3)
    assert table.n_rows == len(ref["label"])


def test_2d_matches_references(rng):
    labels, image = make_case((23, 29), rng, n_seeds=9)
    spacing, origin = (0.6, 1.3), (2.0, -1.0)
    table = region_features(labels, image, spacing=spacing, origin=origin)
    assert "flatness" not in table and "volume_mm3" not in table
    assert_matches_reference(table, reference(labels, image, spacing, origin), 2)


@pytest.mark.parametrize("shape", [(1, 6, 7), (5, 1, 4), (4, 6, 1), (1, 1, 1), (6, 1), (1, 5)])
def test_thin_axes(rng, shape):
    labels = rng.integers(0, 4, size=shape)
    labels.flat[0] = 2  # at least one region
    image = rng.normal(size=shape)
    spacing = (1.5, 0.5, 2.0)[-len(shape) :]
    table = region_features(labels, image, spacing=spacing, percentiles=(0, 50, 100))
    index = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(table["label"], index)
    np.testing.assert_allclose(table["mean"], ndi.mean(image, labels, index), rtol=1e-12)
    faces = ref_faces(labels, spacing)
    surf = "surface_mm2" if len(shape) == 3 else "perimeter_mm"
    np.testing.assert_allclose(table[surf], [faces[i] for i in index], rtol=1e-12)
    # np.gradient refuses length-1 axes; fastct gives them a zero component
    grads = [
        np.gradient(image, s, axis=a) if n > 1 else np.zeros_like(image)
        for a, (n, s) in enumerate(zip(shape, spacing))
    ]
    mag = np.sqrt(sum(g**2 for g in grads))
    np.testing.assert_allclose(table["gradient_mean"], ndi.mean(mag, labels, index), rtol=1e-12)
    for q in (0, 50, 100):
        expect = [np.percentile(image[labels == i], q) for i in index]
        np.testing.assert_array_equal(table[f"p{q}"], expect)


def test_known_values():
    labels = np.zeros((4, 6, 6), np.int32)
    labels[1:3, 1:4, 1:4] = 7
    image = np.arange(labels.size, dtype=np.float64).reshape(labels.shape)
    t = region_features(labels, image, spacing=(2.0, 0.5, 0.5))
    assert t["label"].tolist() == [7]
    assert t["count"].tolist() == [18]
    assert t["volume_mm3"].tolist() == [9.0]
    assert t["surface_mm2"].tolist() == [2 * 9 * 0.25 + 4 * 6 * 1.0]
    assert [t[f"bbox_{m}_{a}"][0] for m in ("min", "max") for a in "zyx"] == [1, 1, 1, 3, 4, 4]
    assert t["n_neighbors"].tolist() == [0] and np.isnan(t["contrast"][0])
    # one voxel: sphericity of a cube of faces, no elongation
    one = region_features(np.array([[0, 1]]), np.array([[0.0, 3.0]]))
    assert one["sphericity"][0] == pytest.approx(2 * np.sqrt(np.pi) / 4)
    assert np.isnan(one["elongation"][0]) and np.isnan(one["skewness"][0])
    assert one["p50"][0] == 3.0 and one["std"][0] == 0.0


def test_nan_propagates_per_region(rng):
    labels, image = make_case((6, 7, 8), rng, dtype=np.float64)
    where = tuple(np.argwhere(labels > 0)[len(np.argwhere(labels > 0)) // 2])
    target = labels[where]
    image[where] = np.nan
    table = region_features(labels, image)
    row = np.flatnonzero(table["label"] == target)[0]
    for col in ("mean", "std", "min", "max", "p10", "p50", "p90", "skewness"):
        assert np.isnan(table[col][row]), col
    others = np.ones(table.n_rows, bool)
    others[row] = False
    assert np.all(np.isfinite(table["p50"][others]))
    index = table["label"][others]
    np.testing.assert_allclose(table["mean"][others], ndi.mean(image, labels, index), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.one_of(
            st.integers(-5, 5).map(float),
            st.floats(-1e6, 1e6, allow_nan=False, width=32),
            st.sampled_from([np.inf, -np.inf, 1e300, -1e300, 5e-324]),
        ),
        min_size=1,
        max_size=60,
    ),
    cut=st.integers(0, 60),
    # distinct column names (p<q:g>): 100 and 99.99999999999999 would both be 'p100'
    q=st.lists(st.floats(0, 100), min_size=1, max_size=4, unique_by=lambda p: f"{p:g}"),
    as_float32=st.booleans(),
)
def test_percentiles_equal_numpy(data, cut, q, as_float32):
    values = np.array(data, dtype=np.float64)
    if as_float32:
        with np.errstate(over="ignore"):
            values = values.astype(np.float32)
    labels = np.where(np.arange(values.size) < cut, 1, 2).astype(np.int32)[None, :]
    with np.errstate(all="ignore"):
        table = region_features(labels, values[None, :], percentiles=q, properties=["percentiles"])
        for row, lab in enumerate(table["label"]):
            v = values[labels[0] == lab].astype(np.float64)
            for p in q:
                expect = np.percentile(v, p)
                got = table[f"p{p:g}"][row]
                assert got == expect or (np.isnan(got) and np.isnan(expect)), (p, v)


# -- adjacency ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(9, 11, 12), (17, 15)])
@pytest.mark.parametrize("include_background", [False, True])
def test_adjacency_matches_numpy(rng, shape, include_background):
    labels = voronoi_labels(shape, 10, rng)
    spacing = (2.0, 0.5, 0.75)[-len(shape) :]
    g = region_adjacency(labels, spacing=spacing, include_background=include_background)
    ref = ref_adjacency(labels, spacing, include_background)
    pairs = sorted(ref)
    assert g.edges.tolist() == [list(p) for p in pairs]
    assert g["faces"].tolist() == [ref[p][0] for p in pairs]
    np.testing.assert_allclose(g["area_mm2"], [ref[p][1] for p in pairs], rtol=1e-12)
    assert g["label_a"].dtype == np.int64


def test_adjacency_counts_block_faces_once(rng):
    labels = voronoi_labels((12, 9, 10), 8, rng)
    whole = region_adjacency(labels)
    for planes in (1, 2, 5):
        assert_tables_identical(whole, region_adjacency(labels, block_planes=planes))


def test_adjacency_example():
    g = region_adjacency(np.array([[1, 1, 2], [3, 3, 2]]))
    assert g.edges.tolist() == [[1, 2], [1, 3], [2, 3]]
    assert g["faces"].tolist() == [1, 2, 1]


# -- determinism, streaming, threads -------------------------------------------------------------
def test_streamed_equals_in_memory(rng, archive_path, monkeypatch):
    labels, image = make_case((13, 17, 19), rng, n_seeds=15)
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("s/labels", labels, chunks=(4, 5, 6), spacing=SPACING_3D, origin=ORIGIN_3D)
        ar.create_volume("s/image", image, chunks=(3, 7, 4), spacing=SPACING_3D, origin=ORIGIN_3D)
    memory = region_features(labels, image, spacing=SPACING_3D, origin=ORIGIN_3D)
    with fastct.open(archive_path) as ar:
        lv, iv = ar["s/labels"], ar["s/image"]
        # spacing and origin come from the volumes
        assert_tables_identical(memory, region_features(lv, iv))
        assert_tables_identical(memory, region_features(lv, image))
        for planes in (1, 3, 4):
            assert_tables_identical(memory, region_features(lv, iv, block_planes=planes))
        fastct.set_memory_budget(17 * 19 * 9 * F._BYTES_PER_VOXEL)  # several chunk-aligned slabs
        assert_tables_identical(memory, region_features(lv, iv))
        assert_tables_identical(region_adjacency(labels, spacing=SPACING_3D), region_adjacency(lv))


def test_slab_size_and_threads_do_not_change_bits(rng):
    labels, image = make_case((11, 13, 14), rng, n_seeds=40, dtype=np.float64)
    fastct.set_num_threads(1)
    one = region_features(labels, image, spacing=SPACING_3D)
    fastct.set_num_threads(2)
    assert_tables_identical(one, region_features(labels, image, spacing=SPACING_3D))
    assert_tables_identical(one, region_features(labels, image, spacing=SPACING_3D, block_planes=2))
    # storing values or not gives the same moments
    lean = region_features(labels, image, spacing=SPACING_3D, percentiles=())
    for col in lean.columns:
        np.testing.assert_array_equal(lean[col], one[col], err_msg=col)


def test_numba_thread_count_restored(rng):
    labels, image = make_case((5, 6, 7), rng)
    before = numba.get_num_threads()
    fastct.set_num_threads(1)
    region_features(labels, image)
    assert numba.get_num_threads() == before


def test_properties_subset(rng):
    labels, image = make_case((7, 8, 9), rng)
    full = region_features(labels, image)
    sub = region_features(labels, image, properties=["mean", "bbox", "contrast"], percentiles=(25,))
    assert sub.columns == ["label", "mean"] + [
        f"bbox_{m}_{a}" for m in ("min", "max") for a in "zyx"
    ] + ["contrast"]
    for col in sub.columns:
        np.testing.assert_array_equal(sub[col], full[col])


def test_label_dtypes_and_sparse_values(rng, monkeypatch):
    labels, image = make_case((6, 7, 8), rng)
    base = region_features(labels, image)
    for dtype in (np.uint16, np.int16, np.uint32, np.int64, np.uint64):
        t = region_features(labels.astype(dtype), image)
        for col in base.columns:
            np.testing.assert_array_equal(t[col], base[col], err_msg=f"{dtype} {col}")
    # huge label values go through the sorted-list path
    huge = np.where(labels > 0, labels.astype(np.uint64) + np.uint64(2**62), 0)
    t = region_features(huge, image)
    np.testing.assert_array_equal(t["label"], base["label"].astype(np.uint64) + np.uint64(2**62))
    for col in base.columns[1:]:
        np.testing.assert_array_equal(t[col], base[col], err_msg=col)
    # switching to that path half way through the slabs
    monkeypatch.setattr(F, "DIRECT_LABEL_LIMIT", int(labels[:2].max()) + 1)
    t = region_features(labels, image, block_planes=2)
    for col in base.columns:
        np.testing.assert_array_equal(t[col], base[col], err_msg=col)
    small = region_features((labels % 200).astype(np.uint8), image)
    ref = region_features((labels % 200).astype(np.int32), image)
    assert_tables_identical(small, ref)
    # bool labels are one region; non-contiguous and big-endian inputs are accepted
    mask = labels > 0
    b = region_features(mask, image.astype(">f8").T.copy().T)
    assert b["label"].tolist() == [1] and b["count"][0] == mask.sum()


# -- the table -------------------------------------------------------------------------------------
def test_table_csv_and_pandas(rng, tmp_path):
    labels, image = make_case((5, 6, 7), rng)
    table = region_features(labels, image)
    assert isinstance(table, FeatureTable) and isinstance(table, dict)
    path = table.to_csv(tmp_path / "features.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.csv"]
    with open(path) as f:
        assert f.readline().strip().split(",") == table.columns
    back = np.genfromtxt(path, delimiter=",", names=True)
    for col in table.columns:
        np.testing.assert_array_equal(back[col], table[col].astype(np.float64), err_msg=col)
    assert table.to_numpy().shape == (table.n_rows, len(table.columns))
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(table)
    assert list(frame.columns) == table.columns and len(frame) == table.n_rows


# -- bad input ----------------------------------------------------------------------------------
def test_bad_input(rng):
    labels, image = make_case((4, 5, 6), rng)
    with pytest.raises(TypeError, match="labels must have an integer"):
        region_features(labels.astype(np.float32), image)
    with pytest.raises(TypeError, match="image must have a real numeric"):
        region_features(labels, image.astype(np.complex64))
    with pytest.raises(ValueError, match="labels and image must have the same shape"):
        region_features(labels, image[:, :, :-1])
    neg = labels.copy()
    neg[0, 0, 0] = -3
    with pytest.raises(ValueError, match="labels must be >= 0.*-3"):
        region_features(neg, image)
    with pytest.raises(ValueError, match="labels has no region"):
        region_features(np.zeros_like(labels), image)
    with pytest.raises(ValueError, match="labels has no region"):
        region_adjacency(np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="spacing must have 3 values"):
        region_features(labels, image, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="spacing must be > 0"):
        region_features(labels, image, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="spacing must be finite"):
        region_features(labels, image, spacing=np.nan)
    with pytest.raises(ValueError, match="labels must be 2-D"):
        region_features(labels[0, 0], image[0, 0])
    with pytest.raises(ValueError, match="percentiles must be in"):
        region_features(labels, image, percentiles=(50, 101))
    with pytest.raises(ValueError, match="both name the column 'p100'"):
        region_features(labels, image, percentiles=(100.0, 99.99999999999999))
    with pytest.raises(ValueError, match="unknown property 'area'"):
        region_features(labels, image, properties=["area"])
    with pytest.raises(ValueError, match="unknown property 'flatness'"):
        region_features(labels[0], image[0], properties=["flatness"])
    with pytest.raises(TypeError, match="block_planes"):
        region_features(labels, image, block_planes=1.5)
    with pytest.raises(TypeError, match="include_background"):
        region_adjacency(labels, include_background="yes")


def test_volumes_with_different_spacing_need_explicit_spacing(rng, archive_path):
    labels, image = make_case((4, 5, 6), rng)
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("a", labels, spacing=(1, 1, 1))
        ar.create_volume("b", image, spacing=(2, 1, 1))
    with fastct.open(archive_path) as ar:
        with pytest.raises(ValueError, match="spacing: the input volumes disagree"):
            region_features(ar["a"], ar["b"])
        t = region_features(ar["a"], ar["b"], spacing=(2, 1, 1))
        assert t["volume_mm3"].sum() == 2 * (labels > 0).sum()
