"""Lung-RADS v2022-style rules (fastct.pipeline.lungrads), each at its boundary values."""

from __future__ import annotations

import pytest

from fastct.pipeline.lungrads import exam_category, is_growing, nodule_category

BASE = [
    # baseline solid: <6: 2, 6-<8: 3, 8-<15: 4A, >=15: 4B
    ("solid", 5.9, None, "2"),
    ("solid", 5.94, None, "2"),  # rounds to 5.9
    ("solid", 5.95, None, "3"),  # rounds to 6.0 (one decimal, as reported)
    ("solid", 6.0, None, "3"),
    ("solid", 7.9, None, "3"),
    ("solid", 8.0, None, "4A"),
    ("solid", 14.9, None, "4A"),
    ("solid", 15.0, None, "4B"),
    # baseline part-solid: total <6: 2; core <6: 3; 6-<8: 4A; >=8: 4B
    ("part-solid", 5.9, 5.0, "2"),
    ("part-solid", 6.0, 0.0, "3"),
    ("part-solid", 12.0, 5.9, "3"),
    ("part-solid", 12.0, 6.0, "4A"),
    ("part-solid", 12.0, 7.9, "4A"),
    ("part-solid", 12.0, 8.0, "4B"),
    # ground glass: <30: 2, >=30: 3
    ("ground-glass", 29.9, None, "2"),
    ("ground-glass", 30.0, None, "3"),
    # calcified: 1 at any size
    ("calcified", 40.0, None, "1"),
]


@pytest.mark.parametrize("kind, d, core, expected", BASE)
def test_baseline_rules(kind, d, core, expected):
    assert nodule_category(kind, d, solid_diameter_mm=core) == expected
    # a follow-up nodule without history and without a long interval: same rules
    assert nodule_category(kind, d, solid_diameter_mm=core, followup=True) == expected


NEW_SOLID = [(3.9, "2"), (4.0, "3"), (5.9, "3"), (6.0, "4A"), (7.9, "4A"), (8.0, "4B")]


@pytest.mark.parametrize("d, expected", NEW_SOLID)
def test_new_solid(d, expected):
    assert nodule_category("solid", d, new=True, followup=True) == expected


@pytest.mark.parametrize("d, expected", [(4.0, "4A"), (7.9, "4A"), (8.0, "4B"), (20.0, "4B")])
def test_growing_solid(d, expected):
    assert nodule_category("solid", d, growing=True, followup=True) == expected


@pytest.mark.parametrize(
    "d, core, expected",
    [(5.9, 3.0, "3"), (6.0, 3.9, "4A"), (6.0, 4.0, "4B"), (10.0, 0.0, "4A")],
)
def test_new_or_growing_part_solid(d, core, expected):
    for kw in ({"new": True}, {"growing": True}):
        got = nodule_category("part-solid", d, solid_diameter_mm=core, followup=True, **kw)
        assert got == expected


def test_ground_glass_follow_up_and_step_down():
    assert nodule_category("ground-glass", 29.9, new=True, followup=True) == "2"
    assert nodule_category("ground-glass", 30.0, new=True, followup=True) == "3"
    assert nodule_category("ground-glass", 35.0, growing=True, followup=True) == "2"
    # unchanged nodule at follow-up: category 2 from 90 days on, its size rule before
    assert nodule_category("solid", 10.0, followup=True, interval_days=90) == "2"
    assert nodule_category("solid", 10.0, followup=True, interval_days=89) == "4A"
    assert nodule_category("solid", 10.0, followup=True) == "4A"
    # the step-down is a follow-up rule only
    assert nodule_category("solid", 10.0, interval_days=400) == "4A"
    assert nodule_category("calcified", 10.0, new=True, followup=True) == "1"


def test_growth_boundary_and_exam():
    assert not is_growing(5.0, 6.5)  # +1.5 mm is not growth
    assert is_growing(5.0, 6.6)
    assert not is_growing(6.0, 5.0)
    assert exam_category([]) == "1"
    assert exam_category(["2", "1"]) == "2"
    assert exam_category(["3", "4B", "4A"]) == "4B"
    with pytest.raises(ValueError, match="categories"):
        exam_category(["5"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        nodule_category("cavity", 5.0)
    with pytest.raises(ValueError, match="diameter_mm"):
        nodule_category("solid", -1.0)
    with pytest.raises(ValueError, match="both new and growing"):
        nodule_category("solid", 5.0, new=True, growing=True, followup=True)
