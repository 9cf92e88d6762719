"""Plain reference implementations the tests compare fastct against, in one place.

Everything here is written for clarity, not speed: explicit loops or straightforward
NumPy, on the small inputs the tests use. None of it calls fastct's kernels; where a
reference needs fastct's *data* (the phantom's scene description) it reads it, and
says so.

Contents
--------
* :data:`MODES`: scipy.ndimage's boundary modes, the ones every fastct filter takes.
* Boundary extension and a box sum (the streaming engine's references).
* A recursive (IIR) Gaussian: the Young–van Vliet recursion of
  ``fastct.gaussian(method="recursive")`` on fixed tiles, in NumPy.
* A chest-phantom renderer: ``fastct.datasets`` scenes rendered voxel by voxel.
* Region features and the adjacency graph (scipy.ndimage, scikit-image, loops).
* Superpixel metrics (boundary recall, under-segmentation error) as plain loops.
* Resampling as a scipy.ndimage affine map; the FROC by brute force.
* The Hessian by central differences (the blob filter's and the detector's reference).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage as ndi

# DESIGN.md: "Boundary mode names and semantics are scipy.ndimage's".
MODES = ("reflect", "mirror", "nearest", "constant", "wrap")


# -- boundary extension (scipy.ndimage's rules) ------------------------------------------------
def reference_extension(index, n, mode):
    """Plain-loop statement of scipy.ndimage's boundary rules (one index at a time).

    Maps each index (possibly outside ``[0, n)``) to the source index it reads; -1
    means ``cval`` (``mode='constant'``).
    """
    out = []
    for i in index:
        if mode == "constant":
            out.append(i if 0 <= i < n else -1)
            continue
        while not 0 <= i < n:
            if mode == "nearest":
                i = min(max(i, 0), n - 1)
            elif mode == "wrap":
                i = i % n
            elif mode == "reflect":
                i = -i - 1 if i < 0 else 2 * n - 1 - i
            elif mode == "mirror":
                if n == 1:
                    i = 0
                else:
                    i = -i if i < 0 else 2 * n - 2 - i
        out.append(i)
    return np.array(out)


def extend_axis(data, axis, lo, hi, mode, cval):
    """``data`` extended by ``lo`` / ``hi`` samples along ``axis`` by the mode's rules
    (float64). With ``lo`` or ``hi`` negative the result is cut instead."""
    n = data.shape[axis]
    idx = reference_extension(range(-lo, n + hi), n, mode)
    ext = np.take(data.astype(np.float64), np.maximum(idx, 0), axis=axis)
    if mode == "constant":
        shape = [1] * data.ndim
        shape[axis] = idx.size
        ext = np.where((idx < 0).reshape(shape), float(cval), ext)
    return ext


def reference_box_sum(image, radius, mode, cval):
    """Box sum by explicit index maps and sliding windows (float64, exact on ints)."""
    idx = [reference_extension(range(-r, n + r), n, mode) for n, r in zip(image.shape, radius)]
    ext = np.full([len(i) for i in idx], float(cval))
    valid = [i >= 0 for i in idx]
    ext[np.ix_(*valid)] = image.astype(np.float64)[np.ix_(*[i[v] for i, v in zip(idx, valid)])]
    windows = sliding_window_view(ext, tuple(2 * r + 1 for r in radius))
    return windows.sum(axis=tuple(range(image.ndim, 2 * image.ndim)))


# -- Gaussian: taps and the recursive (IIR) filter -------------------------------------------------
def gaussian_taps(sigma, truncate=4.0):
    """scipy.ndimage's Gaussian taps: radius ``int(truncate * sigma + 0.5)``, sum 1."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * x**2 / sigma**2)
    return phi / phi.sum()


def correlate_axis(data, taps, axis, mode, cval):
    """Correlate ``data`` with symmetric ``taps`` along ``axis`` (float64 sums)."""
    r = len(taps) // 2
    ext = extend_axis(data, axis, r, r, mode, cval)
    n = data.shape[axis]
    out = np.zeros(data.shape, np.float64)
    for k, w in enumerate(taps):
        out += w * np.take(ext, np.arange(k, k + n), axis=axis)
    return out


# Unit-scale poles of the 4th-order recursive Gaussian (van Vliet, Young & Verbeek,
# ICPR 1998, L-infinity optimal set); a scale q maps pole b to b ** (1 / q).
YVV_POLES = np.array(
    [1.13228 + 1.28114j, 1.13228 - 1.28114j, 1.78534 + 0.46763j, 1.78534 - 0.46763j]
)
# Below this sigma (voxels) fastct's recursive method filters an axis with the exact taps.
RECURSIVE_MIN_SIGMA = 2.0


def yvv_coefficients(sigma):
    """``(alpha, a1, a2, a3, a4)`` of the causal pass ``w[n] = alpha x[n] + sum_k a_k w[n-k]``.

    The causal filter is ``alpha / prod_i (1 - z^-1 / d_i)`` with ``d_i`` the poles
    scaled by ``1 / q``; ``alpha`` gives it unit DC gain. Each factor is a geometric
    response of variance ``d / (d - 1)**2``; variances add under convolution, so the
    forward + backward pair has variance ``2 * sum_i d_i / (d_i - 1)**2``, and ``q`` is
    solved (Brent's method) to make that ``sigma**2``.
    """
    from scipy.optimize import brentq

    def variance(q):
        d = YVV_POLES ** (1.0 / q)
        return float(np.real(np.sum(2.0 * d / (d - 1.0) ** 2)))

    lo, hi = 0.25, 1.0  # a bracket: the variance grows with q
    while variance(hi) < sigma**2:
        hi *= 2.0
    while variance(lo) > sigma**2:
        lo /= 2.0
    q = brentq(lambda q: variance(q) - sigma**2, lo, hi, xtol=1e-15, rtol=1e-15)
    p = 1.0 / YVV_POLES ** (1.0 / q)  # the z-plane poles, |p| < 1
    a = -np.real(np.poly(p))[1:]
    return np.array([1.0 - a.sum(), *a])


def yvv_window(x, coef):
    """Forward then backward Young–van Vliet pass over a window ``x`` (L, m), float64.

    Before the window the signal is taken constant (the forward pass starts in the
    steady state of ``x[0]``); after it the signal continues constant at ``x[-1]``,
    stated literally: the forward pass runs on over a constant tail long enough for
    every transient to decay below 1e-18, and the backward pass comes back from the
    end of the tail (started in its steady state). fastct computes the same backward
    start in closed form (Triggs & Sdika 2006).
    """
    alpha, a1, a2, a3, a4 = coef
    slowest = np.max(np.abs(np.roots(np.r_[1.0, -coef[1:]])))
    tail = int(math.ceil(math.log(1e-18) / math.log(slowest))) + 8
    length = x.shape[0]
    total = length + tail
    ext = np.concatenate([x, np.repeat(x[-1:], tail, axis=0)])
    w = np.empty((total + 4, *x.shape[1:]))  # w[j + 4]: forward output at sample j
    w[:4] = x[0]
    for j in range(total):
        w[j + 4] = alpha * ext[j] + a1 * w[j + 3] + a2 * w[j + 2] + a3 * w[j + 1] + a4 * w[j]
    w = w[4:]
    v = np.empty((total + 4, *x.shape[1:]))  # v[j]: backward output at sample j
    v[total:] = w[-1]
    for j in range(total - 1, -1, -1):
        v[j] = alpha * w[j] + a1 * v[j + 1] + a2 * v[j + 2] + a3 * v[j + 3] + a4 * v[j + 4]
    return v[:length]


def recursive_gaussian(image, sigma, *, mode="reflect", cval=0.0, truncate=4.0):
    """Plain NumPy statement of ``fastct.gaussian(image, sigma, method="recursive")``.

    Axis by axis (z, y, x), each pass stored in the result dtype (float64 for float64
    input, else float32), as fastct does:

    * ``sigma == 0``: the axis is left alone;
    * ``sigma < 2``: the exact taps (:func:`gaussian_taps`), since the recursion is
      inaccurate there;
    * else the 4th-order Young–van Vliet recursion, cut into fixed tiles of
      ``max(64, 4 * margin)`` samples (rounded up to 64) from sample 0, with
      ``margin = int(truncate * sigma + 0.5)``. A tile's values come from the
      recursion over the tile plus ``margin`` samples each side, read through the
      boundary ``mode`` (``'constant'`` puts ``cval`` there at every pass).

    If no axis has ``sigma >= 2`` fastct runs its exact filter, which this equals too
    (the exact taps on every axis).
    """
    image = np.asarray(image)
    dtype = np.float64 if image.dtype == np.float64 else np.float32
    sigmas = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (image.ndim,))
    cval = float(dtype(cval))
    out = image.astype(dtype)
    for axis, s in enumerate(sigmas):
        if s <= 1e-15:
            continue
        if s < RECURSIVE_MIN_SIGMA:
            out = correlate_axis(out, gaussian_taps(s, truncate), axis, mode, cval).astype(dtype)
            continue
        margin = max(1, int(truncate * s + 0.5))
        tile = max(64, 64 * math.ceil(4 * margin / 64))
        coef = yvv_coefficients(s)
        lines = np.moveaxis(out, axis, 0)
        n = lines.shape[0]
        res = np.empty(lines.shape, np.float64)
        for t0 in range(0, n, tile):
            t1 = min(n, t0 + tile)
            idx = reference_extension(range(t0 - margin, t1 + margin), n, mode)
            window = lines[np.maximum(idx, 0)].astype(np.float64)
            window[idx < 0] = cval
            res[t0:t1] = yvv_window(window, coef)[margin : margin + t1 - t0]
        out = np.moveaxis(res, 0, axis).astype(dtype)
    return out


# -- the chest phantom, voxel by voxel ------------------------------------------------------------
def _prim_distance(ptype, q, z, y, x):
    """Approximate signed distance (mm, < 0 inside) from points to one primitive.

    ``ptype`` 0: ellipsoid, centre ``q[0:3]``, axes the rows of ``q[3:12]``, semi-axes
    ``q[12:15]``: ``k0 (k0 - 1) / k1`` with ``k0 = |u / s|``, ``k1 = |u / s^2|``.
    ``ptype`` 1: round cone from ``a = q[0:3]`` to ``b = q[3:6]``, radii ``q[6]``,
    ``q[7]``: distance to the segment minus the radius there.
    ``ptype`` 2: capped elliptic cylinder along the first row of ``q[3:12]``,
    half-height ``q[14]``, section semi-axes ``q[12:14]``.
    """
    pz, py, px = z - q[0], y - q[1], x - q[2]
    if ptype == 1:
        ba = q[8:11]  # b - a
        h = np.clip((pz * ba[0] + py * ba[1] + px * ba[2]) * q[11], 0.0, 1.0)
        dz, dy, dx = pz - h * ba[0], py - h * ba[1], px - h * ba[2]
        return np.sqrt(dz * dz + dy * dy + dx * dx) - (q[6] + h * (q[7] - q[6]))
    u0 = q[3] * pz + q[4] * py + q[5] * px
    u1 = q[6] * pz + q[7] * py + q[8] * px
    u2 = q[9] * pz + q[10] * py + q[11] * px
    if ptype == 0:
        e0, e1, e2 = u0 / q[12], u1 / q[13], u2 / q[14]
        k0 = np.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
        f0, f1, f2 = e0 / q[12], e1 / q[13], e2 / q[14]
        k1 = np.sqrt(f0 * f0 + f1 * f1 + f2 * f2)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(k1 == 0.0, -min(q[12], q[13], q[14]), k0 * (k0 - 1.0) / k1)
    e1, e2 = u1 / q[12], u2 / q[13]
    k0 = np.sqrt(e1 * e1 + e2 * e2)
    f1, f2 = e1 / q[12], e2 / q[13]
    k1 = np.sqrt(f1 * f1 + f2 * f2)
    with np.errstate(divide="ignore", invalid="ignore"):
        radial = np.where(k1 == 0.0, -min(q[12], q[13]), k0 * (k0 - 1.0) / k1)
    return np.maximum(radial, np.abs(u0) - q[14])


def render_phantom(scene, shape, spacing, origin=(0.0, 0.0, 0.0), background=-1000.0):
    """Render a ``fastct.datasets.ChestScene`` on a grid: clean HU, lung mask, labels.

    Reads the scene's description (``scene._objects``: objects in paint order, each a
    union of primitives, and ``scene.texture``; fastct private data) and composites
    every object at every voxel, with no culling:

    * voxel ``(k, j, i)`` sits at scene point ``origin + (k, j, i) * spacing`` (mm);
    * an object's distance is the minimum over its primitives; a primitive is only
      evaluated inside its bounding box padded by the object's edge width + 0.5 mm;
    * the edge width is ``max(object edge, mean spacing)``; occupancy is
      ``a = min(1, 0.5 - d / width)`` where ``d < width / 2``, and the value is
      blended over what is below: ``v = v (1 - a) + value a``;
    * lung parenchyma (kind 1) adds a gravity gradient ``tgrad (y - tcy)`` and a sum
      of plane waves ``amp cos(k . p + phase)`` to its value;
    * inside (``d <= 0``) an object sets (+1) or clears (-1) the lung mask and paints
      its nodule label (if any).

    Returns ``(image float32, lung bool, labels int32)``, like the renderer's clean
    output before noise and rounding.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64)
    grid = np.indices(shape).reshape(3, -1).astype(np.float64)
    z, y, x = (origin[a] + grid[a] * spacing[a] for a in range(3))
    tk, tphase, tamp, tgrad, tcy = scene.texture
    value = np.full(z.shape, background)
    lung = np.zeros(z.shape, bool)
    labels = np.zeros(z.shape, np.int32)
    mean_spacing = float(np.mean(spacing))
    for obj in scene._objects:
        width = max(obj.edge, mean_spacing)
        pad = width + 0.5
        dmin = np.full(z.shape, 1e300)
        for prim in obj.prims:
            lo, hi = prim.aabb[0::2] - pad, prim.aabb[1::2] + pad
            inside = (
                (z >= lo[0]) & (z <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (x >= lo[2]) & (x <= hi[2])
            )  # fmt: skip
            if inside.any():
                d = _prim_distance(prim.type, prim.params, z[inside], y[inside], x[inside])
                dmin[inside] = np.minimum(dmin[inside], d)
        hit = dmin < 0.5 * width
        a = np.minimum(0.5 - dmin[hit] / width, 1.0)
        val = np.full(a.shape, obj.value)
        if obj.kind == 1:
            zh, yh, xh = z[hit], y[hit], x[hit]
            tex = tgrad * (yh - tcy)
            for m in range(tk.shape[0]):
                tex = tex + tamp[m] * np.cos(
                    tk[m, 0] * zh + tk[m, 1] * yh + tk[m, 2] * xh + tphase[m]
                )
            val = val + tex
        value[hit] = value[hit] * (1.0 - a) + val * a
        solid = dmin <= 0.0
        if obj.lung == 1:
            lung[solid] = True
        elif obj.lung == -1:
            lung[solid] = False
        if obj.label:
            labels[solid] = obj.label
    return (
        value.astype(np.float32).reshape(shape),
        lung.reshape(shape),
        labels.reshape(shape),
    )


# -- region features and the adjacency graph --------------------------------------------------------
def ref_faces(labels, spacing):
    """Exposed face area per label, by slicing: a face is exposed if the neighbour is
    another label or outside the image."""
    out = {}
    pad = np.pad(labels, 1, constant_values=-1)
    inner = tuple(slice(1, -1) for _ in range(labels.ndim))
    for axis in range(labels.ndim):
        area = np.prod([s for a, s in enumerate(spacing) if a != axis])
        for shift in (1, -1):
            nb = np.roll(pad, shift, axis=axis)[inner]
            exposed = (labels != nb) & (labels > 0)
            for lab, c in zip(*np.unique(labels[exposed], return_counts=True)):
                out[lab] = out.get(lab, 0.0) + c * area
    return out


def ref_adjacency(labels, spacing=None, include_background=False):
    """{(a, b): [faces, area]} for face-adjacent labels a < b."""
    spacing = spacing or (1.0,) * labels.ndim
    edges = {}
    for axis in range(labels.ndim):
        area = np.prod([s for a, s in enumerate(spacing) if a != axis])
        a = np.moveaxis(labels, axis, 0)[:-1].ravel()
        b = np.moveaxis(labels, axis, 0)[1:].ravel()
        keep = a != b
        if not include_background:
            keep &= (a > 0) & (b > 0)
        lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
        for pair in zip(lo.tolist(), hi.tolist()):
            e = edges.setdefault(pair, [0, 0.0])
            e[0] += 1
            e[1] += area
    return edges


def region_features_reference(labels, image, spacing, origin, percentiles=(10, 50, 90)):
    """Every column of ``fastct.region_features`` from scipy.ndimage, skimage,
    scipy.stats and NumPy."""
    import scipy.stats
    from skimage.measure import regionprops_table

    ndim = labels.ndim
    axes = "zyx"[-ndim:]
    index = np.unique(labels[labels > 0])
    img = image.astype(np.float64)
    ones = np.ones_like(img)
    ref = {"label": index, "count": ndi.sum(ones, labels, index).astype(np.int64)}
    ref["mean"] = np.asarray(ndi.mean(img, labels, index))
    ref["std"] = np.sqrt(ndi.variance(img, labels, index))
    ref["min"] = np.asarray(ndi.minimum(img, labels, index))
    ref["max"] = np.asarray(ndi.maximum(img, labels, index))
    values = [img[labels == lab] for lab in index]
    for q in percentiles:
        ref[f"p{q:g}"] = np.array([np.percentile(v, q) for v in values])
    ref["skewness"] = np.array([scipy.stats.skew(v, bias=True) for v in values])
    ref["kurtosis"] = np.array([scipy.stats.kurtosis(v, fisher=True, bias=True) for v in values])
    com = np.array(ndi.center_of_mass(ones, labels, index))
    objects = ndi.find_objects(labels)
    for a, name in enumerate(axes):
        ref[f"centroid_{name}_mm"] = origin[a] + com[:, a] * spacing[a]
        ref[f"bbox_min_{name}"] = np.array([objects[lab - 1][a].start for lab in index])
        ref[f"bbox_max_{name}"] = np.array([objects[lab - 1][a].stop for lab in index])
    sk = regionprops_table(
        labels,
        spacing=spacing,
        properties=("label", "area", "bbox", "centroid", "inertia_tensor_eigvals"),
    )
    assert np.array_equal(sk["label"], index)
    ref["sk_area"] = sk["area"]
    for a, name in enumerate(axes):
        ref[f"sk_bbox_min_{name}"] = sk[f"bbox-{a}"]
        ref[f"sk_bbox_max_{name}"] = sk[f"bbox-{a + ndim}"]
        ref[f"sk_centroid_{name}"] = sk[f"centroid-{a}"] + origin[a]
    for k in range(ndim):
        ref[f"inertia_eig_{k}"] = sk[f"inertia_tensor_eigvals-{k}"]
    # shape from the covariance of the physical voxel positions
    elong, flat = [], []
    for lab in index:
        pts = np.argwhere(labels == lab) * np.asarray(spacing)
        ev = np.sort(np.linalg.eigvalsh(np.atleast_2d(np.cov(pts.T, bias=True))))[::-1]
        ev = np.maximum(ev, 0)
        elong.append(np.sqrt(ev[1] / ev[0]) if ev[0] > 0 else np.nan)
        flat.append(np.sqrt(ev[-1] / ev[0]) if ev[0] > 0 else np.nan)
    ref["elongation"] = np.array(elong)
    if ndim == 3:
        ref["flatness"] = np.array(flat)
    faces = ref_faces(labels, spacing)
    surface = np.array([faces[lab] for lab in index])
    size = ref["count"] * np.prod(spacing)
    if ndim == 3:
        ref["volume_mm3"] = size
        ref["surface_mm2"] = surface
        ref["sphericity"] = (36 * np.pi * size**2) ** (1 / 3) / surface
    else:
        ref["area_mm2"] = size
        ref["perimeter_mm"] = surface
        ref["sphericity"] = 2 * np.sqrt(np.pi * size) / surface
    grads = [g for g, n in zip(np.gradient(img, *spacing), img.shape)]
    magnitude = np.sqrt(sum(g**2 for g in grads))
    ref["gradient_mean"] = np.asarray(ndi.mean(magnitude, labels, index))
    # contrast: plain loops over the adjacency graph
    edges = ref_adjacency(labels)
    contrast, degree = [], []
    for lab in index:
        nbrs = [b for (a, b) in edges if a == lab] + [a for (a, b) in edges if b == lab]
        degree.append(len(nbrs))
        if nbrs:
            contrast.append(img[labels == lab].mean() - img[np.isin(labels, nbrs)].mean())
        else:
            contrast.append(np.nan)
    ref["n_neighbors"] = np.array(degree)
    ref["contrast"] = np.array(contrast)
    return ref


# -- superpixel metrics ----------------------------------------------------------------------------
def ref_boundary(labels, mask=None):
    """A voxel is on the boundary if a face neighbour (inside the mask) differs."""
    out = np.zeros(labels.shape, bool)
    for idx in np.ndindex(labels.shape):
        if mask is not None and not mask[idx]:
            continue
        for axis, step in itertools.product(range(labels.ndim), (-1, 1)):
            nb = list(idx)
            nb[axis] += step
            if not 0 <= nb[axis] < labels.shape[axis]:
                continue
            nb = tuple(nb)
            if mask is not None and not mask[nb]:
                continue
            if labels[nb] != labels[idx]:
                out[idx] = True
    return out


def ref_recall(seg, gt, tol, mask=None):
    gb, sb = ref_boundary(gt, mask), ref_boundary(seg, mask)
    hits = 0
    for idx in zip(*np.nonzero(gb)):
        box = tuple(slice(max(0, i - tol), i + tol + 1) for i in idx)
        hits += bool(sb[box].any())
    return hits / gb.sum() if gb.sum() else 1.0


def ref_ue(seg, gt, mask=None):
    if mask is not None:
        seg, gt = seg[mask], gt[mask]
    seg, gt = seg.ravel(), gt.ravel()
    total = 0
    for g in np.unique(gt):
        for s in np.unique(seg[gt == g]):
            inside = np.sum((seg == s) & (gt == g))
            total += min(inside, np.sum(seg == s) - inside)
    return total / seg.size


def ref_ue_achanta(seg, gt, thr=0.05):
    seg, gt = seg.ravel(), gt.ravel()
    total = 0
    for g in np.unique(gt):
        for s in np.unique(seg):
            size = np.sum(seg == s)
            if np.sum((seg == s) & (gt == g)) > thr * size:
                total += size
    return (total - seg.size) / seg.size


# -- resampling ------------------------------------------------------------------------------------
def resample_reference(img, t, shape, sp, org, msp, morig, order, cval):
    """``fastct.resample`` as an index-space affine for scipy (float64 computation)."""
    msp, sp = np.asarray(msp, float), np.asarray(sp, float)
    mat = (t.linear * sp[None, :]) / msp[:, None]
    vec = (t.linear @ np.asarray(org, float) + t.offset - np.asarray(morig, float)) / msp
    return ndi.affine_transform(img.astype(np.float64), mat, vec, output_shape=shape,
                                order=order, mode="constant", cval=cval)  # fmt: skip


# -- detection evaluation --------------------------------------------------------------------------
def froc_brute_force(dets, truths, rates, lo=0.0, hi=math.inf):
    """Sweep every threshold with plain loops (LUNA16 rule, irrelevant findings)."""
    scores = sorted({d["probability"] for ds in dets for d in ds}) + [math.inf]
    points = []
    for t in scores:
        found = total = fps = 0
        for ds, ns in zip(dets, truths):
            for n in ns:
                rel = lo <= n["diameter_mm"] < hi
                hit = any(
                    d["probability"] >= t
                    and math.dist(d["center_mm"], n["center_mm"]) <= n["diameter_mm"] / 2
                    for d in ds
                )
                total += rel
                found += rel and hit
            for d in ds:
                if d["probability"] >= t and not any(
                    math.dist(d["center_mm"], n["center_mm"]) <= n["diameter_mm"] / 2 for n in ns
                ):
                    fps += 1
        points.append((fps / len(dets), found / total if total else 0.0))
    return [max([s for f, s in points if f <= r] + [0.0]) for r in rates]


def hessian_central(g, pad, spacing):
    """``(..., 3, 3)`` Hessian of the 3-D array ``g`` by central differences, on the
    grid ``g[pad[0]:-pad[0], ...]`` (``pad`` >= 1 voxel of real or extended data on each
    side): ``(g[i+1] - 2 g[i] + g[i-1]) / d^2`` on the diagonal and
    ``(g[i+1, j+1] - g[i+1, j-1] - g[i-1, j+1] + g[i-1, j-1]) / (4 d_i d_j)`` off it."""
    n = tuple(s - 2 * p for s, p in zip(g.shape, pad))

    def sh(a, b, c):
        return g[
            pad[0] + a : pad[0] + a + n[0],
            pad[1] + b : pad[1] + b + n[1],
            pad[2] + c : pad[2] + c + n[2],
        ]

    dz, dy, dx = spacing
    hzz = (sh(1, 0, 0) - 2 * sh(0, 0, 0) + sh(-1, 0, 0)) / dz**2
    hyy = (sh(0, 1, 0) - 2 * sh(0, 0, 0) + sh(0, -1, 0)) / dy**2
    hxx = (sh(0, 0, 1) - 2 * sh(0, 0, 0) + sh(0, 0, -1)) / dx**2
    hzy = (sh(1, 1, 0) - sh(1, -1, 0) - sh(-1, 1, 0) + sh(-1, -1, 0)) / (4 * dz * dy)
    hzx = (sh(1, 0, 1) - sh(1, 0, -1) - sh(-1, 0, 1) + sh(-1, 0, -1)) / (4 * dz * dx)
    hyx = (sh(0, 1, 1) - sh(0, 1, -1) - sh(0, -1, 1) + sh(0, -1, -1)) / (4 * dy * dx)
    rows = [[hzz, hzy, hzx], [hzy, hyy, hyx], [hzx, hyx, hxx]]
    return np.stack([np.stack(r, -1) for r in rows], -2)
