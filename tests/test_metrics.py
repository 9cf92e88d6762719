"""Superpixel quality metrics against plain-loop statements of their definitions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from naive import ref_boundary, ref_recall, ref_ue, ref_ue_achanta

import fastct
from fastct.metrics import boundary_map, boundary_recall, undersegmentation_error

labels_2d = arrays(
    np.int32, st.tuples(st.integers(1, 7), st.integers(1, 7)), elements=st.integers(0, 3)
)
labels_3d = arrays(
    np.int32,
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)),
    elements=st.integers(0, 2),
)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), tol=st.integers(0, 3))
def test_against_reference(data, tol):
    gt = data.draw(st.one_of(labels_2d, labels_3d))
    seg = data.draw(arrays(np.int32, gt.shape, elements=st.integers(0, 4)))
    mask = data.draw(st.one_of(st.none(), arrays(np.bool_, gt.shape)))
    assert np.array_equal(boundary_map(gt, mask), ref_boundary(gt, mask))
    assert boundary_recall(seg, gt, tolerance=tol, mask=mask) == pytest.approx(
        ref_recall(seg, gt, tol, mask)
    )
    if mask is None or mask.any():
        assert undersegmentation_error(seg, gt, mask=mask) == pytest.approx(ref_ue(seg, gt, mask))
    assert undersegmentation_error(seg, gt, method="achanta") == pytest.approx(
        ref_ue_achanta(seg, gt)
    )


def test_perfect_and_relabelled():
    gt = np.zeros((10, 12), int)
    gt[:, 6:] = 1
    gt[5:, :3] = 2
    seg = np.choose(gt, [7, 3, 11])  # same partition, other names
    assert boundary_recall(seg, gt, tolerance=0) == 1.0
    assert undersegmentation_error(seg, gt) == 0.0
    assert undersegmentation_error(seg, gt, method="achanta") == 0.0


def test_one_segment_over_two_halves():
    gt = np.zeros((4, 6, 8), int)
    gt[:, :, 4:] = 1
    seg = np.zeros_like(gt)
    # each half meets the single segment: min(half, other half) twice = everything
    assert undersegmentation_error(seg, gt) == 1.0
    assert undersegmentation_error(seg, gt, method="achanta") == 1.0
    assert boundary_recall(seg, gt) == 0.0


def test_oversegmentation_is_perfect():
    gt = np.zeros((6, 7), int)
    gt[2:, 3:] = 5
    seg = np.arange(gt.size).reshape(gt.shape)
    assert undersegmentation_error(seg, gt) == 0.0
    assert boundary_recall(seg, gt, tolerance=0) == 1.0


def test_tolerance_and_shift():
    gt = np.zeros((8, 8), int)
    gt[:, 4:] = 1
    seg = np.zeros((8, 8), int)
    seg[:, 6:] = 1  # two voxels off
    assert boundary_recall(seg, gt, tolerance=0) == 0.0
    assert boundary_recall(seg, gt, tolerance=1) == 0.5
    assert boundary_recall(seg, gt, tolerance=2) == 1.0


def test_mask_restricts_evaluation():
    gt = np.zeros((6, 6), int)
    gt[:, 3:] = 1
    seg = np.zeros((6, 6), int)
    mask = np.zeros((6, 6), bool)
    mask[:, :3] = True  # only region 0 is inside: nothing to miss
    assert boundary_recall(seg, gt, mask=mask) == 1.0
    assert undersegmentation_error(seg, gt, mask=mask) == 0.0


def test_no_boundary_gives_full_recall():
    assert boundary_recall(np.arange(9).reshape(3, 3), np.zeros((3, 3), int)) == 1.0


def test_volumes_are_accepted(archive_path):
    gt = np.zeros((4, 5, 6), np.int32)
    gt[:, :, 3:] = 1
    with fastct.open(archive_path, "w") as ar:
        v = ar.create_volume("gt", gt)
        assert boundary_recall(v, v) == 1.0
        assert undersegmentation_error(v, gt) == 0.0


@pytest.mark.parametrize(
    "call,exc,words",
    [
        (
            lambda: boundary_recall(np.zeros((3, 3), int), np.zeros((3, 4), int)),
            ValueError,
            "same shape",
        ),
        (lambda: boundary_recall(np.zeros((3, 3)), np.zeros((3, 3), int)), TypeError, "labels"),
        (
            lambda: boundary_recall(np.zeros((3, 3), int), np.zeros((3, 3), int), tolerance=-1),
            ValueError,
            "tolerance",
        ),
        (
            lambda: boundary_recall(np.zeros((3, 3), int), np.zeros((3, 3), int), tolerance=1.5),
            TypeError,
            "tolerance",
        ),
        (lambda: undersegmentation_error(np.zeros(3, int), np.zeros(3, int)), ValueError, "2-D"),
        (
            lambda: undersegmentation_error(
                np.zeros((3, 3), int), np.zeros((3, 3), int), method="x"
            ),
            ValueError,
            "method",
        ),
        (
            lambda: undersegmentation_error(
                np.zeros((3, 3), int), np.zeros((3, 3), int), mask=np.ones((2, 2), bool)
            ),
            ValueError,
            "mask",
        ),
    ],
)
def test_bad_input(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
