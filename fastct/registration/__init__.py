"""Rigid and similarity registration (MSE, NCC, Mattes MI) and resampling.

:func:`register` finds the transform that maps FIXED physical points to MOVING physical
points (ITK's convention; see :mod:`fastct.transforms`) by minimising a metric over a
multi-resolution pyramid; :func:`resample` warps the moving image onto the fixed grid
with such a transform.

How :func:`register` works
--------------------------
* Both images are read as float32 (an archive ``Volume`` is read into memory) and a
  pyramid is built per level: Gaussian smoothing with ``smoothing_sigmas`` (mm) then
  subsampling by ``shrink_factors``. A scalar shrink factor ``f`` is applied in
  physical units: axis ``a`` is shrunk by ``max(1, round(f * min(spacing) /
  spacing[a]))`` so anisotropic scans get near-isotropic coarse levels; a tuple
  gives the per-axis factors explicitly (ITK's convention).
* The metric is evaluated at fixed samples: every voxel of the level (``'full'``), or
  a seeded random subset (``sampling`` a fraction or a count; ``'auto'`` uses at most
  ``max_samples`` voxels at full resolution and ``max_samples // f`` on a level shrunk by
  ``f``, all of them when the level is smaller). Samples mapping
  outside the moving image are skipped. Except with ``'full'``, every sample is moved
  off the grid by a seeded uniform offset of up to half a voxel per axis and the fixed
  image interpolated there (``_levels._jittered``): grid-aligned samples give the moving
  image's linear interpolation a blur that depends on the transform's sub-voxel phase,
  which biases the metric's optimum (issue 19; correlation by up to 0.35 voxel on noisy
  images); off-grid samples see every phase equally whatever the transform.
  The value and its analytic gradient come from one parallel Numba pass over the
  samples (Mattes MI too: each block accumulates the joint histogram and its
  derivative, as ITK does for low-dimensional transforms), reduced over fixed blocks
  in block order, so the result is the same bits at any thread count.
* Metrics (all minimised): ``'mse'`` mean squared difference; ``'ncc'`` minus the
  squared normalised correlation (ITK's ``CorrelationImageToImageMetricv4``);
  ``'mi'`` minus Mattes mutual information (joint histogram with ``bins`` bins, a
  zero-order window on the fixed intensity and a cubic B-spline Parzen window on the
  moving one, 2 padding bins, as ITK's ``MattesMutualInformationImageToImageMetricv4``).
* Parameters: 3-D rigid is a versor (vector part) and a translation about a fixed
  centre; similarity adds an isotropic scale; 2-D uses an angle. They are scaled by
  the largest physical shift they cause at the corners of the fixed image (ITK's
  ``RegistrationParameterScalesFromPhysicalShift``), so the optimiser works in mm.
  The optimiser is L-BFGS with an Armijo backtracking line search (no curvature
  condition: about one metric evaluation per iteration; no step moves the fixed
  corners by more than 4 voxels of the level; the curvature pairs are carried from
  level to level), per level at most ``max_iterations`` iterations, stopping when a
  step moves the fixed image's corners by less than ``step_tolerance`` voxels of the
  level, when the relative decrease of the metric falls below ``tolerance`` or the
  largest scaled gradient below ``gradient_tolerance`` (per mm). A step that would
  keep fewer than 20% of the level's starting valid samples is refused (the
  small-overlap optimum of mutual information).
* Initialisation: ``init='geometry'`` aligns the image centres, ``'moments'`` the
  intensity centres of mass (intensities minus their minimum), ``'auto'`` (default)
  tries both on the coarsest level and keeps the better, ``'none'`` starts from the
  identity; ``initial_transform`` overrides all three. ``rotation_search=A``
  tries rotations of -A, -A/2, 0, A/2, A degrees about each axis (ITK Euler angles,
  125 combinations in 3-D) on the coarsest level and starts from the best.
  ``translation_search=F`` (default 0.4) scores shifts of -F, -2F/3, ..., F (7 per
  axis) times the fixed image's extent along each axis (343 in 3-D, 49 in 2-D) on 2048
  seeded random samples of the coarsest level (shifts losing more than half of the valid
  samples ignored) and optimises the two best-scoring shifts that beat the start as
  extra starts; the best end point continues to the finer levels.

Image geometry follows ITK: voxel ``i`` lies at ``origin + direction @ (i * spacing)``
(LPS, ``(z, y, x)`` components, one direction column per array axis; see
:mod:`fastct._geometry`). ``fixed_direction``/``moving_direction`` (``register``) and
``direction``/``moving_direction`` (``resample``) default to the identity, or to a
Volume's ``direction`` attribute. The kernels work on axis-aligned "local" grids: the
directions are composed into the affine map from a fixed sample to the moving continuous
index, and the metric gradient, accumulated in the moving image's local frame, is
rotated back to physical space. Initialisation, parameter scales, step limits and the
searches use physical points (the translation search spans the fixed image's physical
extent along each axis). Flips and permutations are exact; the transform (and its
``.tfm``) is the one SimpleITK uses with the same images.
"""

from __future__ import annotations

# One concern per private module: _inputs (argument checks, loading), _model (transform
# parametrisation), _levels (pyramid, metric evaluation), _optimise (L-BFGS, rotation
# and translation searches), _register (register, Registration, initialisation),
# _resample (resample).
from ._register import INITS as INITS
from ._register import METRICS as METRICS
from ._register import TRANSFORMS as TRANSFORMS
from ._register import Registration, register
from ._resample import resample

__all__ = ["Registration", "register", "resample"]
