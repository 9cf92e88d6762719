"""Single scans: :func:`chest_phantom` and its slab-by-slab stream :func:`iter_phantom_slabs`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fastct._validate import check_positive_int

from ._checks import _check_real, _resolve_grid
from ._constants import _DIAMETER_LIMITS
from ._records import Phantom
from ._scene import ChestScene


def chest_phantom(
    size: str = "small",
    *,
    seed: int = 0,
    n_nodules: int | None = None,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | float | None = None,
    origin: Sequence[float] | str | None = None,
    noise_hu: float = 20.0,
    diameter_range: tuple[float, float] = _DIAMETER_LIMITS,
    realism: str = "standard",
) -> Phantom:
    """Synthetic chest CT in HU with lung mask, nodule labels and nodule records.

    Parameters
    ----------
    size : str
        Preset name, one of :data:`PRESETS` (``'tiny'``, ``'small'``, ``'medium'``,
        ``'large'``, ``'clinical'``). All presets cover the same 300 x 360 x 360 mm chest.
    seed : int
        Seed of the scene and the noise; the same seed gives identical bytes.
    n_nodules : int, optional
        Number of nodules (default 6), diameters in ``diameter_range``.
    shape, spacing : optional
        Override the preset grid. If only one is given the other is derived so that the
        grid covers the standard field of view :data:`FOV_MM`.
    origin : sequence of 3 float or 'center', optional
        Physical position of voxel (0, 0, 0), default 0 (the chest is centred at
        :data:`SCENE_CENTER_MM`); ``'center'`` centres the grid on the chest.
    noise_hu : float
        Standard deviation of the in-plane correlated Gaussian noise (0 for none).
    diameter_range : (float, float)
        Nodule diameters in mm, within [3, 30].
    realism : {'standard', 'hard'}
        ``'standard'`` (default) is the ideal phantom above, unchanged bit for bit.
        ``'hard'`` returns :func:`hard_chest_phantom` with the same seed, grid and nodule
        count (its own defaults for everything else: 2.5 mm slices, soft-kernel noise
        drawn from the calibrated range unless ``noise_hu`` is given, 4-25 mm nodules
        unless ``diameter_range`` is given); call :func:`hard_chest_phantom` directly
        for the hard settings.

    Returns
    -------
    Phantom
        A :class:`HardPhantom` for ``realism='hard'``.

    Examples
    --------
    >>> from fastct.datasets import chest_phantom
    >>> ph = chest_phantom("tiny", seed=0)
    >>> ph.image.dtype.name, ph.image.shape, ph.spacing
    ('int16', (32, 48, 48), (9.375, 7.5, 7.5))
    >>> len(ph.nodules), ph.nodules[0].kind in ("solid", "part-solid")
    (6, True)
    """
    if realism == "hard":
        from ._hard import hard_chest_phantom

        extra: dict = {}
        if noise_hu != 20.0:
            extra["noise_hu"] = noise_hu
        if tuple(diameter_range) != _DIAMETER_LIMITS:
            extra["diameter_range"] = diameter_range
        return hard_chest_phantom(
            size,
            seed=seed,
            n_nodules=n_nodules,
            shape=shape,
            spacing=spacing,
            origin=origin,
            **extra,
        )
    if realism != "standard":
        raise ValueError(f"realism must be 'standard' or 'hard', got {realism!r}")
    shp, spc, org = _resolve_grid(size, shape, spacing, origin)
    scene = ChestScene.generate(seed, n_nodules=n_nodules, diameter_range=diameter_range)
    return scene.render(shp, spc, org, noise_hu=noise_hu)


def iter_phantom_slabs(
    size: str = "clinical",
    *,
    seed: int = 0,
    n_nodules: int | None = None,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | float | None = None,
    origin: Sequence[float] | str | None = None,
    noise_hu: float = 20.0,
    diameter_range: tuple[float, float] = _DIAMETER_LIMITS,
    slab: int = 32,
) -> Iterator[tuple[int, int, Phantom]]:
    """Stream :func:`chest_phantom` slab by slab: yields ``(z0, z1, Phantom)``.

    Each slab holds slices ``z0 <= k < z1`` (its ``origin`` is that of slice ``z0``);
    concatenating them along z gives exactly ``chest_phantom(...)`` with the same
    arguments, while memory stays bounded by one slab. ``nodules`` of every slab are the
    records of the whole volume. Other parameters are those of :func:`chest_phantom`.

    Examples
    --------
    >>> from fastct.datasets import iter_phantom_slabs
    >>> [(z0, z1) for z0, z1, _ in iter_phantom_slabs("tiny", slab=12)]
    [(0, 12), (12, 24), (24, 32)]
    """
    shp, spc, org = _resolve_grid(size, shape, spacing, origin)
    slab = check_positive_int(slab, "slab")
    scene = ChestScene.generate(seed, n_nodules=n_nodules, diameter_range=diameter_range)
    noise_hu = _check_real(noise_hu, "noise_hu", minimum=0.0)
    return scene.iter_slabs(shp, spc, org, slab=slab, noise_hu=noise_hu)
