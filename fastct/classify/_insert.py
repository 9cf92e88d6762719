"""Synthetic nodules inserted into real CT (for evaluating and training detectors on
real backgrounds).

Nodule model (:func:`insert_nodules`)
-------------------------------------
A nodule of diameter ``D`` centred at ``c`` (physical, mm) has a *coverage*

    a(p) = 1/2 erfc((|p - c| - R(u)) / (sqrt(2) edge_mm)),   u = (p - c) / |p - c|

with ``R(u) = D / 2`` for a round nodule and, for a lobulated one, ``D / 2`` times a
smooth random bump field over the directions ``u`` (a few lobes, mean radius ``D / 2``).
``edge_mm`` (default 0.6 mm) is the Gaussian width of the edge. Partial volume: the
coverage of a voxel is the mean of ``a`` over a regular grid of sub-samples of the
voxel's box (one per ``subsample_mm``, default 0.35 mm, per axis, so a 5 mm slice
gets 15 sub-slices), with the voxel positions mapped through the scan's origin,
spacing and direction, so the nodule is round in millimetres at any spacing and
orientation.

The nodule replaces the *smooth* background where it is brighter and keeps the scan's
own noise and texture:

    out = image + a * max(T - smooth(image), 0)

where ``smooth`` is a Gaussian of ``background_sigma_mm`` (default 1 mm) and ``T`` the
nodule's attenuation: ``solid`` (default 20 HU), ``ground_glass`` (default -600 HU),
``part_solid`` (a ground-glass nodule with a solid core of ``core_fraction`` of its
diameter, default 0.5). Vessels and chest wall brighter than ``T`` stay as they are (a
nodule touching them merges with them as a real one does), and the scanner's noise is
kept because only a smooth offset is added. Output values are rounded back to the
input's integer dtype.

Sites (:func:`sample_insertion_sites`)
--------------------------------------
Vessel voxels are those whose 3 x 3 x 3 mean exceeds -300 HU inside the lung mask;
every centre lies in the lung on a voxel whose 3 x 3 x 3 mean is below -500 HU.
``parenchymal``: the centre is at least ``R + 2`` mm from the lung border and
``R + 0.5`` mm from every vessel voxel (the ball holds no vessel). ``juxtapleural``:
the centre is ``0.4 R .. 0.9 R`` from the lung border (the nodule touches the pleura)
and ``R`` mm from every vessel voxel. ``juxtavascular``: the centre is ``R .. R + 1.5``
mm from the nearest vessel voxel (the nodule touches a vessel) and at least ``R + 3`` mm
from the lung border. Distances are Euclidean, in mm. Every centre keeps
``exclude_margin_mm`` (default 10 mm) + the nodule radius away from the ``exclude`` mask
(the scan's annotated lesions), and ``exclude_margin_mm`` + both radii away from the
other inserted nodules.

Rule for evaluation and training: the annotated lesions of a scan are never inside an
inserted nodule's neighbourhood, they are scored as *ignore* regions (a detection of
one is neither a hit nor a false positive) when inserted nodules are evaluated, and a
detector trained on a scan with insertions must treat its annotated lesions as
positives or leave them out, never as negatives; leave-one-scan-out evaluations keep
every scan of a patient (e.g. the two reconstruction kernels of one acquisition) in the
same fold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._geometry import index_to_physical, physical_to_index
from .._validate import check_direction, check_origin, check_real, check_spacing

__all__ = ["InsertedNodule", "InsertionResult", "insert_nodules", "sample_insertion_sites"]

KINDS = ("solid", "ground_glass", "part_solid")
SHAPES = ("round", "lobulated")
SITES = ("parenchymal", "juxtapleural", "juxtavascular")
DEFAULT_HU = {"solid": 20.0, "ground_glass": -600.0, "part_solid": -600.0}


@dataclass(frozen=True)
class InsertedNodule:
    """One inserted nodule (a record of :func:`insert_nodules`).

    Attributes
    ----------
    label : int
        Its value in the truth mask (1, 2, ... in the order given).
    center_mm : tuple of float
        Physical centre ``(z, y, x)``.
    diameter_mm : float
        Nominal diameter.
    kind, shape : str
    hu : float
        Attenuation (of the ground glass for ``part_solid``).
    core_hu : float or None
        Attenuation of the solid core (``part_solid``).
    site : str
        Where it was put (free text; :func:`sample_insertion_sites` fills it).
    n_voxels : int
        Voxels in the truth mask (coverage >= 0.5).
    """

    label: int
    center_mm: tuple[float, float, float]
    diameter_mm: float
    kind: str
    shape: str
    hu: float
    core_hu: float | None
    site: str
    n_voxels: int

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-able record."""
        return {
            "label": self.label, "center_mm": list(self.center_mm),
            "diameter_mm": self.diameter_mm, "kind": self.kind, "shape": self.shape,
            "hu": self.hu, "core_hu": self.core_hu, "site": self.site, "n_voxels": self.n_voxels,
        }  # fmt: skip


@dataclass
class InsertionResult:
    """The modified scan and its truth.

    Attributes
    ----------
    image : ndarray
        The scan with the nodules (same shape and dtype as the input).
    truth : ndarray of int32
        Label per nodule where its coverage is at least 0.5, else 0.
    nodules : list of InsertedNodule
    """

    image: np.ndarray
    truth: np.ndarray
    nodules: list[InsertedNodule] = field(default_factory=list)


def _per_nodule(value: Any, n: int, name: str, allowed: Sequence[str] | None = None) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        vals = [value] * n
    else:
        vals = list(value)
        if len(vals) != n:
            raise ValueError(f"{name} must have one entry per nodule ({n}), got {len(vals)}")
    if allowed is not None:
        for v in vals:
            if v not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {v!r}")
    return vals


def _lobe_field(rng: np.random.Generator, n_lobes: int, amplitude: float):
    """A smooth positive radius factor over unit directions, mean about 1."""
    v = rng.normal(size=(n_lobes, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    w = rng.uniform(0.5, 1.0, n_lobes)

    # mean of max(u.v, 0)^4 over the sphere is 1/10
    def factor(u: np.ndarray) -> np.ndarray:
        bumps = np.clip(u @ v.T, 0.0, None) ** 4 @ w
        return 1.0 + amplitude * (bumps - 0.1 * w.sum())

    return factor


def _coverage(
    shape: tuple[int, ...],
    sp: tuple[float, ...],
    org: Any,
    d: Any,
    center: np.ndarray,
    radius: float,
    edge: float,
    sub_mm: float,
    lobes: Any,
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Partial-volume coverage of one nodule on its bounding box of voxels."""
    from scipy.special import erfc

    reach = radius * (1.6 if lobes is not None else 1.0) + 4.0 * edge + max(sp)
    ci = physical_to_index(center[None, :], sp, org, d)[0]
    # bounding box in index space: the extent of the reach ball along each array axis
    half = reach / np.asarray(sp, float)
    lo = np.maximum(np.floor(ci - half).astype(int), 0)
    hi = np.minimum(np.ceil(ci + half).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return None
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    nsub = [max(1, int(math.ceil(s / sub_mm))) for s in sp]
    offs = [(np.arange(n) + 0.5) / n - 0.5 for n in nsub]
    grids = np.meshgrid(*[np.arange(a, b, dtype=float) for a, b in zip(lo, hi, strict=True)],
                        indexing="ij")  # fmt: skip
    cov = np.zeros(grids[0].shape, np.float64)
    for oz in offs[0]:
        for oy in offs[1]:
            for ox in offs[2]:
                idx = np.stack([grids[0] + oz, grids[1] + oy, grids[2] + ox], -1)
                p = index_to_physical(idx.reshape(-1, 3), sp, org, d) - center
                r = np.linalg.norm(p, axis=1)
                if lobes is None:
                    rad = radius
                else:
                    u = p / np.maximum(r, 1e-9)[:, None]
                    rad = radius * lobes(u)
                cov += (0.5 * erfc((r - rad) / (math.sqrt(2.0) * edge))).reshape(cov.shape)
    cov /= len(offs[0]) * len(offs[1]) * len(offs[2])
    return box, cov


def insert_nodules(
    image: Any,
    centers_mm: Any,
    diameters_mm: Any,
    *,
    spacing: Any,
    origin: Any = None,
    direction: Any = None,
    kind: str | Sequence[str] = "solid",
    shape: str | Sequence[str] = "round",
    hu: float | Sequence[float] | None = None,
    core_hu: float = 20.0,
    core_fraction: float = 0.5,
    edge_mm: float = 0.6,
    background_sigma_mm: float = 1.0,
    subsample_mm: float = 0.35,
    lobulation: float = 0.35,
    site: str | Sequence[str] = "",
    seed: int | None = 0,
) -> InsertionResult:
    """Insert synthetic nodules into a CT scan (model: module docs).

    Parameters
    ----------
    image : (z, y, x) array
        CT in HU (not modified).
    centers_mm : (n, 3) array_like
        Physical centres ``(z, y, x)`` (``origin + direction @ (index * spacing)``).
    diameters_mm : float or sequence of float
        Nominal diameter per nodule (mm).
    spacing, origin, direction
        The scan's geometry.
    kind : str or sequence of str
        ``"solid"``, ``"ground_glass"`` or ``"part_solid"`` (per nodule or for all).
    shape : str or sequence of str
        ``"round"`` or ``"lobulated"``.
    hu : float or sequence, optional
        Attenuation (HU) per nodule; default 20 (solid) or -600 (ground glass and the
        ground-glass part of a part-solid nodule).
    core_hu, core_fraction : float
        Solid core of a part-solid nodule: its HU and its diameter as a fraction of
        the nodule's.
    edge_mm : float
        Edge width (Gaussian sigma of the profile, mm).
    background_sigma_mm : float
        Smoothing of the background that the nodule replaces (mm).
    subsample_mm : float
        Sub-sample step of the partial-volume integration (mm).
    lobulation : float
        Relative radius modulation of lobulated nodules.
    site : str or sequence of str
        Recorded in the records.
    seed : int, optional
        Seed of the lobulation.

    Returns
    -------
    InsertionResult
        The image (same dtype), the truth label mask and the records.

    Examples
    --------
    >>> import numpy as np
    >>> from fastct.classify import insert_nodules
    >>> rng = np.random.default_rng(0)
    >>> lung = (-850 + 20 * rng.standard_normal((20, 64, 64))).astype(np.int16)
    >>> res = insert_nodules(lung, [(25.0, 32.0, 32.0)], 10.0, spacing=(2.5, 1.0, 1.0))
    >>> res.image.dtype, int(res.image[10, 32, 32]) > -100, res.nodules[0].n_voxels > 150
    (dtype('int16'), True, True)
    >>> int(np.abs(res.image[:, :8].astype(int) - lung[:, :8]).max())
    0
    """
    from scipy import ndimage as ndi

    img = np.asarray(image)
    if img.ndim != 3:
        raise ValueError(f"image must be a 3-D (z, y, x) volume, got shape {img.shape}")
    if img.dtype.kind not in "iuf":
        raise TypeError(f"image must have a real (integer or float) dtype, got {img.dtype}")
    sp = check_spacing(spacing, 3, "spacing")
    org = check_origin(origin, 3, "origin")
    d = check_direction(direction, 3, "direction")
    centers = np.asarray(centers_mm, dtype=float)
    if centers.ndim == 1 and centers.shape == (3,):
        centers = centers[None, :]
    if centers.ndim != 2 or centers.shape[1] != 3:
        raise ValueError(f"centers_mm must have shape (n, 3), got {centers.shape}")
    n = centers.shape[0]
    diams = [check_real(x, "diameters_mm", lo=0, lo_open=True)
             for x in _per_nodule(diameters_mm, n, "diameters_mm")]  # fmt: skip
    kinds = _per_nodule(kind, n, "kind", KINDS)
    shapes = _per_nodule(shape, n, "shape", SHAPES)
    sites = _per_nodule(site, n, "site")
    hus = _per_nodule(hu, n, "hu")
    core_hu = check_real(core_hu, "core_hu")
    core_fraction = check_real(core_fraction, "core_fraction", lo=0, hi=1, lo_open=True)
    edge = check_real(edge_mm, "edge_mm", lo=0, lo_open=True)
    bsig = check_real(background_sigma_mm, "background_sigma_mm", lo=0)
    sub = check_real(subsample_mm, "subsample_mm", lo=0, lo_open=True)
    lob = check_real(lobulation, "lobulation", lo=0, hi=0.9)
    rng = np.random.default_rng(seed)
    work = img.astype(np.float32)
    truth = np.zeros(img.shape, np.int32)
    records = []
    for k in range(n):
        c = centers[k]
        t_hu = DEFAULT_HU[kinds[k]] if hus[k] is None else check_real(hus[k], "hu")
        lobes = _lobe_field(rng, int(rng.integers(3, 7)), lob) if shapes[k] == "lobulated" else None
        got = _coverage(img.shape, sp, org, d, c, 0.5 * diams[k], edge, sub, lobes)
        if got is None:
            raise ValueError(f"centers_mm[{k}] = {tuple(c)} puts the nodule outside the image")
        box, cov = got
        bg = work[box]
        smooth = ndi.gaussian_filter(bg, [bsig / s for s in sp], mode="nearest") if bsig else bg
        delta = cov * np.maximum(t_hu - smooth, 0.0)
        core = None
        if kinds[k] == "part_solid":
            core = core_hu
            got_c = _coverage(img.shape, sp, org, d, c, 0.5 * diams[k] * core_fraction, edge,
                              sub, lobes)  # fmt: skip
            if got_c is not None:
                cbox, ccov = got_c
                # the core box lies inside the nodule's box (smaller reach)
                rel = tuple(slice(cb.start - b.start, cb.stop - b.start)
                            for cb, b in zip(cbox, box, strict=True))  # fmt: skip
                base = smooth[rel] + delta[rel]
                delta[rel] += ccov * np.maximum(core - base, 0.0)
        work[box] = bg + delta.astype(np.float32)
        inside = cov >= 0.5
        sub_truth = truth[box]
        sub_truth[inside & (sub_truth == 0)] = k + 1
        records.append(
            InsertedNodule(
                k + 1, tuple(float(v) for v in c), float(diams[k]), kinds[k], shapes[k],
                float(t_hu), core, str(sites[k]), int(inside.sum()),
            )
        )  # fmt: skip
    if img.dtype.kind in "iu":
        info = np.iinfo(img.dtype)
        out = np.clip(np.rint(work), info.min, info.max).astype(img.dtype)
    else:
        out = work.astype(img.dtype)
    return InsertionResult(out, truth, records)


def sample_insertion_sites(
    image: Any,
    lung_mask: Any,
    diameters_mm: Sequence[float],
    *,
    spacing: Any,
    origin: Any = None,
    direction: Any = None,
    sites: str | Sequence[str] = "parenchymal",
    exclude: Any = None,
    exclude_margin_mm: float = 10.0,
    seed: int | None = 0,
) -> list[tuple[tuple[float, float, float], str]]:
    """Physical centres for nodules of the given diameters (rules: module docs).

    Returns one ``(center_mm, site)`` per diameter, in order; a diameter for which no
    site of the requested kind is left gets the nearest kind that has one
    (``juxtavascular`` -> ``parenchymal``, ``juxtapleural`` -> ``parenchymal``), and
    ``ValueError`` if none is.

    Examples
    --------
    >>> import numpy as np
    >>> from fastct.classify import sample_insertion_sites
    >>> img = np.full((30, 60, 60), -850, np.int16)
    >>> lung = np.zeros(img.shape, bool); lung[2:28, 5:55, 5:55] = True
    >>> s = sample_insertion_sites(img, lung, [8.0, 8.0], spacing=(2, 1, 1), seed=1)
    >>> [site for _, site in s]
    ['parenchymal', 'parenchymal']
    >>> float(np.linalg.norm(np.subtract(s[0][0], s[1][0]))) >= 18
    True
    """
    from scipy import ndimage as ndi

    img = np.asarray(image)
    lung = np.asarray(lung_mask)
    if img.ndim != 3 or lung.shape != img.shape:
        raise ValueError(
            f"image must be 3-D and lung_mask of its shape, got {img.shape} and {lung.shape}"
        )
    lung = lung > 0
    sp = check_spacing(spacing, 3, "spacing")
    org = check_origin(origin, 3, "origin")
    d = check_direction(direction, 3, "direction")
    diams = [check_real(x, "diameters_mm", lo=0, lo_open=True) for x in diameters_mm]
    kinds = _per_nodule(sites, len(diams), "sites", SITES)
    margin = check_real(exclude_margin_mm, "exclude_margin_mm", lo=0)
    rng = np.random.default_rng(seed)
    depth = ndi.distance_transform_edt(lung, sampling=sp).astype(np.float32)
    soft = ndi.uniform_filter(img.astype(np.float32), size=3)
    vessel = (soft > -300) & (depth > 0)
    if exclude is not None:
        ex = np.asarray(exclude) > 0
        far_ex = ndi.distance_transform_edt(~ex, sampling=sp).astype(np.float32) if ex.any() \
            else np.full(img.shape, np.inf, np.float32)  # fmt: skip
    else:
        far_ex = np.full(img.shape, np.inf, np.float32)
    far_v = ndi.distance_transform_edt(~vessel, sampling=sp).astype(np.float32) if vessel.any() \
        else np.full(img.shape, np.inf, np.float32)  # fmt: skip
    placed: list[tuple[np.ndarray, float]] = []
    out = []
    for diam, want in zip(diams, kinds, strict=True):
        r = 0.5 * diam
        order = [want] if want == "parenchymal" else [want, "parenchymal"]
        got = None
        for kind in order:
            ok = lung & (far_ex >= r + margin) & (soft < -500)
            if kind == "parenchymal":
                ok &= (depth >= r + 2.0) & (far_v >= r + 0.5)
            elif kind == "juxtapleural":
                ok &= (depth >= 0.4 * r) & (depth <= 0.9 * r) & (far_v >= r)
            else:
                ok &= (far_v >= r) & (far_v <= r + 1.5) & (depth >= r + 3.0)
            cand = np.flatnonzero(ok)
            if cand.size == 0:
                continue
            pts = index_to_physical(
                np.column_stack(np.unravel_index(cand, img.shape)).astype(float), sp, org, d
            )
            good = np.ones(cand.size, bool)
            for c, rr in placed:
                good &= np.linalg.norm(pts - c, axis=1) >= r + rr + margin
            if not good.any():
                continue
            pick = rng.choice(np.flatnonzero(good))
            got = (pts[pick], kind)
            break
        if got is None:
            raise ValueError(f"no {want} site is left for a {diam:g} mm nodule")
        placed.append((got[0], r))
        out.append((tuple(float(v) for v in got[0]), got[1]))
    return out
