"""Lung-RADS v2022-*style* categories from a nodule's type, size and history.

This is a research aid that imitates the structure of the ACR Lung-RADS v2022 size
rules so that a report reads like a screening follow-up read. It is **not** a clinical
tool: it knows nothing of benign patterns other than calcification, of fat, of
perifissural or airway nodules, of the 4X modifiers, or of the patient, and its inputs
come from an automatic detector.

Sizes are mean axial diameters ``(long + short) / 2`` in mm, rounded to 0.1 mm before
the comparisons (guidelines report one decimal). A nodule is *growing* when its mean
diameter increased by more than :data:`GROWTH_MM` (1.5 mm) since the baseline (the
guideline's "within 12 months" is not checked: the interval is shown in the report).
*New* means found at follow-up with no matched baseline detection above the operating
threshold.

Baseline rules (and a follow-up nodule without history: ``new=False, growing=False``
with no interval of at least :data:`STABLE_STEP_DOWN_DAYS`):

============  ======================================  =====================================
category      solid (mean diameter d)                 part-solid (total d, solid core c)
============  ======================================  =====================================
2             d < 6                                   d < 6
3             6 <= d < 8                              d >= 6 and c < 6
4A            8 <= d < 15                             6 <= c < 8
4B            d >= 15                                 c >= 8
============  ======================================  =====================================

Ground-glass: 2 when d < 30, 3 when d >= 30. Calcified: 1.

Follow-up rules:

- solid, new: 2 if d < 4, 3 if 4 <= d < 6, 4A if 6 <= d < 8, 4B if d >= 8;
- solid, growing: 4A if d < 8, 4B if d >= 8;
- part-solid, new or growing: 3 if d < 6, 4A if c < 4, 4B if c >= 4;
- ground-glass, new: 2 if d < 30, 3 if d >= 30; growing or unchanged: 2;
- an existing nodule that is not growing, seen at least :data:`STABLE_STEP_DOWN_DAYS`
  (90) days after the baseline: 2 (v2022's step-down of unchanged category 3 / 4
  nodules); with a shorter or unknown interval its baseline size rule applies.

Exam category: the highest nodule category, 1 when there is no nodule.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CATEGORIES",
    "GROWTH_MM",
    "STABLE_STEP_DOWN_DAYS",
    "exam_category",
    "is_growing",
    "nodule_category",
]

#: Categories in increasing order of suspicion.
CATEGORIES = ("1", "2", "3", "4A", "4B")
#: A mean-diameter increase above this (mm) is growth.
GROWTH_MM = 1.5
#: An unchanged nodule seen this many days after the baseline steps down to category 2.
STABLE_STEP_DOWN_DAYS = 90.0
_TYPES = ("solid", "part-solid", "ground-glass", "calcified")


def _r(value: float) -> float:
    return round(float(value), 1)


def is_growing(diameter_baseline_mm: float, diameter_followup_mm: float) -> bool:
    """True when the mean diameter grew by more than :data:`GROWTH_MM` (after rounding
    both to 0.1 mm).

    Examples
    --------
    >>> is_growing(5.0, 6.5), is_growing(5.0, 6.6)
    (False, True)
    """
    return _r(_r(diameter_followup_mm) - _r(diameter_baseline_mm)) > GROWTH_MM


def _solid_baseline(d: float) -> str:
    if d < 6:
        return "2"
    if d < 8:
        return "3"
    if d < 15:
        return "4A"
    return "4B"


def _part_solid_baseline(d: float, c: float) -> str:
    if d < 6:
        return "2"
    if c < 6:
        return "3"
    if c < 8:
        return "4A"
    return "4B"


def nodule_category(
    kind: str,
    diameter_mm: float,
    *,
    solid_diameter_mm: float | None = None,
    new: bool = False,
    growing: bool = False,
    followup: bool = False,
    interval_days: float | None = None,
) -> str:
    """The Lung-RADS v2022-style category of one nodule (rules in the module docstring).

    Parameters
    ----------
    kind : {'solid', 'part-solid', 'ground-glass', 'calcified'}
    diameter_mm : float
        Mean axial diameter (of the whole nodule for part-solid ones).
    solid_diameter_mm : float, optional
        Mean diameter of the solid core (part-solid; 0 when None).
    new, growing : bool
        Follow-up history: new since the baseline, or growing (:func:`is_growing`).
    followup : bool
        The category is that of a follow-up exam (baseline rules otherwise).
    interval_days : float, optional
        Days since the baseline (for the step-down of unchanged nodules).

    Examples
    --------
    >>> nodule_category("solid", 5.9), nodule_category("solid", 6.0)
    ('2', '3')
    >>> nodule_category("solid", 7.0, new=True, followup=True)
    '4A'
    >>> nodule_category("solid", 7.0, followup=True, interval_days=120)
    '2'
    """
    if kind not in _TYPES:
        raise ValueError(f"kind must be one of {_TYPES}, got {kind!r}")
    d = _r(diameter_mm)
    if d < 0:
        raise ValueError(f"diameter_mm must be >= 0, got {diameter_mm!r}")
    c = _r(solid_diameter_mm or 0.0)
    if kind == "calcified":
        return "1"
    if followup and new and growing:
        raise ValueError("a nodule cannot be both new and growing")
    history = followup and (new or growing)
    if followup and not history:
        if interval_days is not None and interval_days >= STABLE_STEP_DOWN_DAYS:
            return "2"
    if kind == "ground-glass":
        if history and growing:
            return "2"
        return "2" if d < 30 else "3"
    if kind == "solid":
        if not history:
            return _solid_baseline(d)
        if new:
            if d < 4:
                return "2"
            if d < 6:
                return "3"
            return "4A" if d < 8 else "4B"
        return "4A" if d < 8 else "4B"
    # part-solid
    if not history:
        return _part_solid_baseline(d, c)
    if d < 6:
        return "3"
    return "4A" if c < 4 else "4B"


def exam_category(categories: Iterable[str]) -> str:
    """The highest of the nodule categories; ``'1'`` when there is none.

    Examples
    --------
    >>> exam_category(["2", "4A", "3"]), exam_category([])
    ('4A', '1')
    """
    cats = list(categories)
    for c in cats:
        if c not in CATEGORIES:
            raise ValueError(f"categories must be among {CATEGORIES}, got {c!r}")
    return max(cats, key=CATEGORIES.index, default="1")
