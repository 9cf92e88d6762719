"""Rigid and similarity transforms in physical millimetres, with ITK ``.tfm`` exchange.

A transform maps points of the FIXED image's physical space to points of the MOVING
image's physical space (the convention of ITK, SimpleITK and
:func:`fastct.register`)::

    q = s * R @ (p - c) + c + t

with ``R`` a rotation matrix, ``s`` an isotropic scale (1 for
:class:`RigidTransform`), ``c`` the centre of rotation and ``t`` the translation.
Points, like everything in fastct, are in ``(z, y, x)`` order (``(y, x)`` in 2-D), in
mm. The homogeneous ``matrix`` is ``(ndim + 1, ndim + 1)`` in that same order.

Rotation parameters
-------------------
``versor`` (3-D)
    The unit quaternion ``(w, vz, vy, vx)`` with ``w >= 0`` whose rotation matrix,
    written with the usual right-handed formula in fastct's ``(z, y, x)`` axis order,
    is ``rotation``. The axis reversal between fastct and ITK is a reflection, so ITK's
    versor of the same physical rotation is ``-(vx, vy, vz)`` of this one; the ``.tfm``
    export takes care of that.
``euler_angles``
    ITK's angles of the same physical rotation: 3-D ``(angle_x, angle_y, angle_z)`` as
    the parameters of ``itk::Euler3DTransform`` (rotation ``Rz @ Rx @ Ry`` in ITK's
    ``(x, y, z)`` axes), 2-D ``(angle,)`` as ``itk::Euler2DTransform``; radians.

ITK transform files
-------------------
``.tfm`` files are ITK's text format in its ``(x, y, z)`` physical order (LPS for
DICOM-derived images). :meth:`RigidTransform.save` writes ``VersorRigid3DTransform``,
``Similarity3DTransform``, ``Euler2DTransform`` or ``Similarity2DTransform`` so that
``SimpleITK.ReadTransform`` maps ``p[::-1]`` to ``q[::-1]``; :func:`load_transform`
reads those plus ``Euler3DTransform``, ``AffineTransform`` (when rigid or similar),
``TranslationTransform``, ``IdentityTransform`` and ``CompositeTransform`` chains of
them. Transforms act on physical points, so they do not depend on how an image is
stored: :func:`fastct.register` and :func:`fastct.resample` honour image ``direction``
cosines (``physical = origin + direction @ (index * spacing)``, ITK's convention), and
a ``.tfm`` written from a registration of oriented images (RAS, LAS, permuted or oblique)
is what SimpleITK and 3D Slicer use with those images.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RigidTransform", "SimilarityTransform", "load_transform"]

_ORTHO_TOL = 1e-6
_FORMAT = "fastct-transform"
_CONVENTION = "maps fixed physical points (z, y, x mm) to moving physical points"


# -- rotation helpers ------------------------------------------------------------------
def _quat_to_matrix(w: float, v: np.ndarray) -> np.ndarray:
    """Right-handed rotation matrix of the unit quaternion (w, v) in the given axes."""
    a, b, c = v
    return np.array(
        [
            [w * w + a * a - b * b - c * c, 2 * (a * b - w * c), 2 * (a * c + w * b)],
            [2 * (a * b + w * c), w * w - a * a + b * b - c * c, 2 * (b * c - w * a)],
            [2 * (a * c - w * b), 2 * (b * c + w * a), w * w - a * a - b * b + c * c],
        ]
    )


def _matrix_to_quat(r: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, v) with w >= 0 of a 3x3 rotation matrix (Shepperd's method)."""
    t = np.trace(r)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.asarray(q, dtype=float)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def versor_matrix(v: Any) -> np.ndarray:
    """Rotation matrix of the versor with vector part ``v`` (``|v| <= 1``, w >= 0)."""
    v = np.asarray(v, dtype=float)
    n2 = float(v @ v)
    if n2 > 1.0:
        v = v / math.sqrt(n2)
        n2 = 1.0
    return _quat_to_matrix(math.sqrt(1.0 - n2), v)


def _flip(m: np.ndarray) -> np.ndarray:
    """A square matrix with the axis order reversed (fastct <-> ITK)."""
    return np.ascontiguousarray(m[::-1, ::-1])


def _rot2(angle: float) -> np.ndarray:
    """2-D rotation by ITK angle ``angle`` written in fastct's (y, x) axes."""
    c, s = math.cos(angle), math.sin(angle)
    return _flip(np.array([[c, -s], [s, c]]))


def _euler3_itk(ax: float, ay: float, az: float) -> np.ndarray:
    """ITK Euler3DTransform (ZXY) rotation in ITK's (x, y, z) axes."""
    cx, sx, cy, sy, cz, sz = (math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay),
                              math.cos(az), math.sin(az))  # fmt: skip
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx @ ry


def _check_ndim(ndim: Any) -> int:
    if isinstance(ndim, bool) or not isinstance(ndim, (numbers.Integral, np.integer)):
        raise TypeError(f"ndim must be 2 or 3, got {type(ndim).__name__}")
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    return int(ndim)


def _vector(value: Any, ndim: int, name: str) -> np.ndarray:
    if value is None:
        return np.zeros(ndim)
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {ndim} numbers, got {value!r}") from None
    if arr.shape != (ndim,):
        raise ValueError(f"{name} must have {ndim} values (one per axis), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr.copy()


def _check_rotation_matrix(r: np.ndarray, name: str = "rotation") -> np.ndarray:
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{name} must be finite")
    if not np.allclose(r.T @ r, np.eye(len(r)), atol=_ORTHO_TOL) or np.linalg.det(r) <= 0:
        raise ValueError(
            f"{name} must be a proper rotation matrix (orthonormal, determinant +1), "
            f"got {np.round(r, 6).tolist()}"
        )
    return r


def _rotation(value: Any, ndim: int) -> np.ndarray:
    if value is None:
        return np.eye(ndim)
    if ndim == 2 and isinstance(value, (numbers.Real, np.number)) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            raise ValueError(f"rotation angle must be finite, got {value!r}")
        return _rot2(float(value))
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"rotation must be a matrix, an angle or a versor, got {value!r}") from None
    if arr.shape == (ndim, ndim):
        return _check_rotation_matrix(arr.copy())
    if ndim == 3 and arr.shape in ((3,), (4,)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"rotation versor must be finite, got {arr.tolist()}")
        if arr.shape == (4,):
            n = np.linalg.norm(arr)
            if not abs(n - 1.0) < 1e-6:
                raise ValueError(f"rotation versor (w, vz, vy, vx) must have norm 1, got {n:.6g}")
            q = arr / n
            return _quat_to_matrix(q[0], q[1:])
        if arr @ arr > 1.0 + 1e-12:
            raise ValueError(
                f"rotation versor vector part (vz, vy, vx) must have norm <= 1, got {arr.tolist()}"
            )
        return versor_matrix(arr)
    expected = "an angle (radians) or a 2x2 matrix" if ndim == 2 else (
        "a 3x3 matrix, a versor (w, vz, vy, vx) or its vector part (vz, vy, vx)")  # fmt: skip
    raise ValueError(f"rotation must be {expected}, got shape {arr.shape}")


def _check_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (numbers.Real, np.number)):
        raise TypeError(f"scale must be a positive number, got {type(scale).__name__}")
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return scale


# -- the transforms ----------------------------------------------------------------------
class RigidTransform:
    """Rotation about ``center`` followed by a translation, in 2-D or 3-D.

    ``apply(p) = R @ (p - center) + center + translation`` maps FIXED physical points
    (mm, ``(z, y, x)`` order) to MOVING physical points.

    Parameters
    ----------
    ndim : {2, 3}
        Dimension.
    rotation : array_like or float, optional
        A proper rotation matrix ``(ndim, ndim)`` in fastct's axis order; in 2-D also
        an angle in radians (ITK's ``Euler2DTransform`` angle); in 3-D also a versor
        ``(w, vz, vy, vx)`` or its vector part (see the module notes). Identity by
        default.
    translation, center : array_like of ``ndim`` float, optional
        mm; zero by default.

    Examples
    --------
    >>> import numpy as np
    >>> from fastct.transforms import RigidTransform
    >>> t = RigidTransform(3, translation=(1.0, 2.0, 3.0))
    >>> t.apply([0.0, 0.0, 0.0])
    array([1., 2., 3.])
    >>> r = RigidTransform(2, rotation=np.pi / 2, center=(10.0, 10.0))
    >>> np.round(r.apply([10.0, 11.0]), 12)  # +x rotates to +y (ITK's angle)
    array([11., 10.])
    >>> bool(np.allclose((r @ r.inverse()).matrix, np.eye(3)))
    True
    """

    _kind = "rigid"

    def __init__(
        self,
        ndim: int = 3,
        *,
        rotation: Any = None,
        translation: Any = None,
        center: Any = None,
    ) -> None:
        self._ndim = _check_ndim(ndim)
        self._rotation = _rotation(rotation, self._ndim)
        self._translation = _vector(translation, self._ndim, "translation")
        self._center = _vector(center, self._ndim, "center")
        self._scale = 1.0

    # -- read-only parameters ----------------------------------------------------
    @property
    def ndim(self) -> int:
        """Dimension (2 or 3)."""
        return self._ndim

    @property
    def rotation(self) -> np.ndarray:
        """Rotation matrix ``(ndim, ndim)`` in fastct's axis order (a copy)."""
        return self._rotation.copy()

    @property
    def translation(self) -> np.ndarray:
        """Translation in mm (a copy)."""
        return self._translation.copy()

    @property
    def center(self) -> np.ndarray:
        """Centre of rotation and scaling in mm (a copy)."""
        return self._center.copy()

    @property
    def scale(self) -> float:
        """Isotropic scale (1 for a rigid transform)."""
        return self._scale

    @property
    def versor(self) -> np.ndarray:
        """3-D only: the unit quaternion ``(w, vz, vy, vx)``, ``w >= 0``, of ``rotation``."""
        if self._ndim != 3:
            raise ValueError(f"versor is defined for 3-D transforms, this one is {self._ndim}-D")
        return _matrix_to_quat(self._rotation)

    @property
    def angle(self) -> float:
        """2-D only: rotation angle in radians (ITK's ``Euler2DTransform`` angle)."""
        if self._ndim != 2:
            raise ValueError(f"angle is defined for 2-D transforms, this one is {self._ndim}-D")
        r = _flip(self._rotation)
        return math.atan2(r[1, 0], r[0, 0])

    @property
    def euler_angles(self) -> tuple[float, ...]:
        """ITK Euler angles in radians: 3-D ``(angle_x, angle_y, angle_z)``, 2-D ``(angle,)``."""
        if self._ndim == 2:
            return (self.angle,)
        r = _flip(self._rotation)
        ax = math.asin(max(-1.0, min(1.0, r[2, 1])))
        a = math.cos(ax)
        if abs(a) > 1e-5:
            ay = math.atan2(-r[2, 0] / a, r[2, 2] / a)
            az = math.atan2(-r[0, 1] / a, r[1, 1] / a)
        else:  # gimbal lock: ITK's choice (angle_z = 0)
            ay = math.atan2(r[0, 2], r[0, 0])
            az = 0.0
        return (ax, ay, az)

    @property
    def linear(self) -> np.ndarray:
        """The linear part ``scale * rotation``."""
        return self._scale * self._rotation

    @property
    def offset(self) -> np.ndarray:
        """``b`` of ``apply(p) = linear @ p + b``."""
        return self._center + self._translation - self.linear @ self._center

    @property
    def matrix(self) -> np.ndarray:
        """Homogeneous ``(ndim + 1, ndim + 1)`` matrix: ``[q, 1] = matrix @ [p, 1]``."""
        m = np.eye(self._ndim + 1)
        m[: self._ndim, : self._ndim] = self.linear
        m[: self._ndim, self._ndim] = self.offset
        return m

    # -- mapping points -------------------------------------------------------------
    def apply(self, points: Any) -> np.ndarray:
        """Map fixed physical points ``(N, ndim)`` or ``(ndim,)`` to moving points (float64)."""
        try:
            p = np.asarray(points, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f"points must be numbers, got {type(points).__name__}") from None
        if p.shape[-1:] != (self._ndim,) or p.ndim not in (1, 2):
            raise ValueError(
                f"points must have shape (N, {self._ndim}) or ({self._ndim},), got {p.shape}"
            )
        return p @ self.linear.T + self.offset

    __call__ = apply

    # -- algebra ----------------------------------------------------------------------
    def inverse(self) -> RigidTransform:
        """The inverse transform (moving -> fixed), centred at the image of ``center``."""
        new_center = self._center + self._translation
        return _make(
            self._ndim,
            self._rotation.T,
            -self._translation,
            new_center,
            1.0 / self._scale,
            similarity=self._kind == "similarity",
        )

    def compose(self, other: RigidTransform) -> RigidTransform:
        """``self @ other``: apply ``other`` first, then ``self``; centred at ``other.center``."""
        if not isinstance(other, RigidTransform):
            raise TypeError(f"other must be a RigidTransform, got {type(other).__name__}")
        if other.ndim != self._ndim:
            raise ValueError(f"cannot compose a {self._ndim}-D and a {other.ndim}-D transform")
        m = self.matrix @ other.matrix
        similarity = "similarity" in (self._kind, other._kind)
        cls = SimilarityTransform if similarity else RigidTransform
        return cls.from_matrix(m, center=other.center)

    def __matmul__(self, other: RigidTransform) -> RigidTransform:
        if not isinstance(other, RigidTransform):
            return NotImplemented
        return self.compose(other)

    @classmethod
    def from_matrix(cls, matrix: Any, center: Any = None) -> RigidTransform:
        """The transform of a homogeneous matrix, with rotation centre ``center``.

        Raises ``ValueError`` when the linear part is not a rotation (for
        :class:`RigidTransform`) or a positive multiple of one (for
        :class:`SimilarityTransform`).

        Examples
        --------
        >>> import numpy as np
        >>> from fastct.transforms import RigidTransform
        >>> m = np.eye(4); m[:3, 3] = (1, 2, 3)
        >>> RigidTransform.from_matrix(m, center=(5, 5, 5)).translation
        array([1., 2., 3.])
        """
        try:
            m = np.asarray(matrix, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f"matrix must be numbers, got {type(matrix).__name__}") from None
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] not in (3, 4):
            raise ValueError(f"matrix must be 3x3 (2-D) or 4x4 (3-D) homogeneous, got {m.shape}")
        ndim = m.shape[0] - 1
        if not np.all(np.isfinite(m)):
            raise ValueError("matrix must be finite")
        if not np.allclose(m[ndim], [0.0] * ndim + [1.0]):
            raise ValueError(f"matrix last row must be [0, ..., 0, 1], got {m[ndim].tolist()}")
        lin = m[:ndim, :ndim]
        det = np.linalg.det(lin)
        if det <= 0:
            raise ValueError(f"matrix must preserve orientation (det > 0), got det {det:.6g}")
        s = det ** (1.0 / ndim)
        rot = lin / s
        if not np.allclose(rot.T @ rot, np.eye(ndim), atol=1e-6):
            raise ValueError(
                "matrix linear part is not a rotation times an isotropic scale "
                f"(shear or anisotropic scale): {np.round(lin, 6).tolist()}"
            )
        if cls._kind == "rigid" and abs(s - 1.0) > 1e-6:
            raise ValueError(
                f"matrix has scale {s:.8g}, not a rigid transform; use SimilarityTransform"
            )
        # Re-orthonormalise (polar decomposition) to remove rounding.
        u, _, vt = np.linalg.svd(rot)
        rot = u @ vt
        c = _vector(center, ndim, "center")
        lin = s * rot
        t = m[:ndim, ndim] + lin @ c - c
        return _make(ndim, rot, t, c, s, similarity=cls._kind == "similarity")

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` restores the transform exactly."""
        d: dict[str, Any] = {
            "format": _FORMAT,
            "version": 1,
            "type": type(self).__name__,
            "ndim": self._ndim,
            "convention": _CONVENTION,
            "rotation": self._rotation.tolist(),
            "translation": self._translation.tolist(),
            "center": self._center.tolist(),
            "scale": self._scale,
            "euler_angles_itk": list(self.euler_angles),
            "matrix": self.matrix.tolist(),
        }
        if self._ndim == 3:
            d["versor"] = self.versor.tolist()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RigidTransform:
        """Rebuild a transform from :meth:`to_dict`'s output."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        kind = data.get("type")
        if data.get("format") != _FORMAT or kind not in ("RigidTransform", "SimilarityTransform"):
            raise ValueError(
                f"not a fastct transform (expected format {_FORMAT!r} and type RigidTransform "
                f"or SimilarityTransform), got format {data.get('format')!r} type {kind!r}"
            )
        if cls is SimilarityTransform and kind == "RigidTransform":
            kind = "SimilarityTransform"
        ndim = _check_ndim(data.get("ndim"))
        rot = _check_rotation_matrix(np.asarray(data["rotation"], dtype=float).reshape(ndim, ndim))
        return _make(
            ndim,
            rot,
            _vector(data["translation"], ndim, "translation"),
            _vector(data["center"], ndim, "center"),
            _check_scale(data.get("scale", 1.0)),
            similarity=kind == "SimilarityTransform",
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the transform to ``.json`` (fastct) or ``.tfm`` (ITK text), atomically.

        Examples
        --------
        >>> import os, tempfile
        >>> from fastct.transforms import RigidTransform, load_transform
        >>> path = os.path.join(tempfile.mkdtemp(), "t.tfm")
        >>> _ = RigidTransform(3, translation=(1, 2, 3)).save(path)
        >>> load_transform(path).translation
        array([1., 2., 3.])
        """
        from ._atomic import atomic_path

        path = Path(os.fspath(path))
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        elif suffix == ".tfm":
            text = self.to_itk()
        else:
            raise ValueError(f"path must end in .json or .tfm, got {str(path)!r}")
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        return path

    def to_itk(self) -> str:
        """The transform as ITK transform-file text (``.tfm``, ITK's (x, y, z) order)."""
        nd = self._ndim
        rot = _flip(self._rotation)
        t = self._translation[::-1]
        c = self._center[::-1]
        sim = self._kind == "similarity"
        if nd == 3:
            w, *v = _matrix_to_quat(rot)
            if sim:
                name, params = "Similarity3DTransform", [*v, *t, self._scale]
            else:
                name, params = "VersorRigid3DTransform", [*v, *t]
        else:
            angle = math.atan2(rot[1, 0], rot[0, 0])
            if sim:
                name, params = "Similarity2DTransform", [self._scale, angle, *t]
            else:
                name, params = "Euler2DTransform", [angle, *t]
        fmt = lambda vals: " ".join(repr(float(v)) for v in vals)  # noqa: E731
        return (
            "#Insight Transform File V1.0\n#Transform 0\n"
            f"Transform: {name}_double_{nd}_{nd}\n"
            f"Parameters: {fmt(params)}\nFixedParameters: {fmt(c)}\n"
        )

    # -- display / comparison ---------------------------------------------------------
    def __repr__(self) -> str:
        parts = [f"ndim={self._ndim}"]
        if self._ndim == 3:
            parts.append(f"versor={np.round(self.versor, 6).tolist()}")
        else:
            parts.append(f"angle={self.angle:.6g}")
        parts.append(f"translation={np.round(self._translation, 4).tolist()}")
        parts.append(f"center={np.round(self._center, 4).tolist()}")
        if self._kind == "similarity":
            parts.append(f"scale={self._scale:.6g}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RigidTransform):
            return NotImplemented
        return (
            type(self) is type(other)
            and self._ndim == other._ndim
            and np.array_equal(self.matrix, other.matrix)
            and np.array_equal(self._center, other._center)
        )

    __hash__ = None  # type: ignore[assignment]


class SimilarityTransform(RigidTransform):
    """Rotation and isotropic scaling about ``center``, then a translation.

    ``apply(p) = scale * R @ (p - center) + center + translation``. Parameters as
    :class:`RigidTransform`, plus ``scale > 0``.

    Examples
    --------
    >>> from fastct.transforms import SimilarityTransform
    >>> s = SimilarityTransform(3, scale=2.0, center=(1.0, 1.0, 1.0))
    >>> s.apply([2.0, 1.0, 1.0])
    array([3., 1., 1.])
    >>> s.inverse().apply([3.0, 1.0, 1.0])
    array([2., 1., 1.])
    """

    _kind = "similarity"

    def __init__(
        self,
        ndim: int = 3,
        *,
        rotation: Any = None,
        translation: Any = None,
        center: Any = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__(ndim, rotation=rotation, translation=translation, center=center)
        self._scale = _check_scale(scale)


def _make(ndim, rot, translation, center, scale, *, similarity: bool) -> RigidTransform:
    obj = object.__new__(SimilarityTransform if similarity else RigidTransform)
    obj._ndim = ndim
    obj._rotation = np.array(rot, dtype=float)
    obj._translation = np.array(translation, dtype=float)
    obj._center = np.array(center, dtype=float)
    obj._scale = float(scale)
    return obj


# -- loading ---------------------------------------------------------------------------------
_ITK_NAME = re.compile(r"^(\w+?)_(?:double|float)_(\d)_(\d)$")


def _itk_block(name: str, params: np.ndarray, fixed: np.ndarray, path: str) -> RigidTransform:
    """One ITK transform (in ITK's axes) as a fastct transform (in fastct's axes)."""
    m = _ITK_NAME.match(name)
    if not m:
        raise ValueError(f"{path}: unsupported transform type {name!r}")
    kind, nd = m.group(1), int(m.group(2))
    if nd not in (2, 3) or int(m.group(3)) != nd:
        raise ValueError(f"{path}: {name} is not a 2-D or 3-D transform")

    def need(n_params: int, n_fixed: int) -> None:
        if len(params) != n_params or len(fixed) < n_fixed:
            raise ValueError(
                f"{path}: {kind} needs {n_params} parameters and {n_fixed} fixed parameters, "
                f"got {len(params)} and {len(fixed)}"
            )

    scale = 1.0
    similarity = False
    if kind in ("VersorRigid3DTransform", "Similarity3DTransform") and nd == 3:
        need(7 if kind.startswith("Similarity") else 6, 3)
        v = params[:3]
        if v @ v > 1.0 + 1e-9:
            raise ValueError(f"{path}: versor {v.tolist()} has norm > 1")
        rot, t, c = versor_matrix(v), params[3:6], fixed[:3]
        if kind.startswith("Similarity"):
            scale, similarity = float(params[6]), True
    elif kind in ("Euler3DTransform",) and nd == 3:
        need(6, 3)
        if len(fixed) >= 4 and fixed[3] != 0:
            raise ValueError(f"{path}: Euler3DTransform with ComputeZYX is not supported")
        rot, t, c = _euler3_itk(*params[:3]), params[3:6], fixed[:3]
    elif kind in ("Euler2DTransform", "Rigid2DTransform") and nd == 2:
        need(3, 2)
        a = params[0]
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        t, c = params[1:3], fixed[:2]
    elif kind == "Similarity2DTransform" and nd == 2:
        need(4, 2)
        scale, similarity, a = float(params[0]), True, params[1]
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        t, c = params[2:4], fixed[:2]
    elif kind in ("AffineTransform", "MatrixOffsetTransformBase", "ScalableAffineTransform"):
        need(nd * nd + nd, nd)
        lin = params[: nd * nd].reshape(nd, nd)
        t, c = params[nd * nd :], fixed[:nd]
        hom = np.eye(nd + 1)
        hom[:nd, :nd] = lin
        hom[:nd, nd] = c + t - lin @ c
        flipped = np.eye(nd + 1)
        flipped[:nd, :nd] = _flip(lin)
        flipped[:nd, nd] = hom[:nd, nd][::-1]
        try:
            sim = SimilarityTransform.from_matrix(flipped, center=c[::-1])
        except ValueError as exc:
            raise ValueError(
                f"{path}: {kind} is not a rigid or similarity transform: {exc}"
            ) from None
        if abs(sim.scale - 1.0) <= 1e-6:
            return RigidTransform.from_matrix(flipped, center=c[::-1])
        return sim
    elif kind == "TranslationTransform":
        need(nd, 0)
        rot, t, c = np.eye(nd), params, np.zeros(nd)
    elif kind == "IdentityTransform":
        rot, t, c = np.eye(nd), np.zeros(nd), np.zeros(nd)
    else:
        raise ValueError(
            f"{path}: unsupported transform type {name!r}; fastct reads rigid and similarity "
            "transforms (VersorRigid3D, Euler3D, Similarity3D, Euler2D, Similarity2D, and "
            "Affine/Translation/Identity when they are rigid or similar)"
        )
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{path}: scale must be > 0, got {scale}")
    return _make(nd, _flip(rot), np.asarray(t)[::-1], np.asarray(c)[::-1], scale,
                 similarity=similarity)  # fmt: skip


def _parse_tfm(text: str, path: str) -> RigidTransform:
    blocks: list[dict[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"{path}: not an ITK transform file (line {line[:60]!r})")
        key = key.strip()
        if key == "Transform":
            blocks.append({"Transform": value.strip()})
        elif key in ("Parameters", "FixedParameters"):
            if not blocks:
                raise ValueError(f"{path}: {key} before any Transform line")
            blocks[-1][key] = value.strip()
    if not blocks:
        raise ValueError(f"{path}: no 'Transform:' entry; not an ITK transform file")
    items = []
    for block in blocks:
        name = block["Transform"]
        if name.startswith("CompositeTransform"):
            continue
        try:
            params = np.array([float(v) for v in block.get("Parameters", "").split()])
            fixed = np.array([float(v) for v in block.get("FixedParameters", "").split()])
        except ValueError:
            raise ValueError(f"{path}: parameters of {name} are not numbers") from None
        items.append(_itk_block(name, params, fixed, path))
    if not items:
        raise ValueError(f"{path}: an empty CompositeTransform")
    # ITK composite: the file lists the queue; the last one is applied first.
    result = items[0]
    for item in items[1:]:
        result = result @ item
    return result


def load_transform(path: str | os.PathLike) -> RigidTransform:
    """Read a transform saved by :meth:`RigidTransform.save` or an ITK ``.tfm`` file.

    Parameters
    ----------
    path : str or PathLike
        A ``.json`` file written by fastct, or an ITK text transform file (``.tfm`` or
        ``.txt``) holding a rigid or similarity transform (see the module notes).

    Returns
    -------
    RigidTransform or SimilarityTransform

    Examples
    --------
    >>> import os, tempfile
    >>> from fastct.transforms import SimilarityTransform, load_transform
    >>> path = os.path.join(tempfile.mkdtemp(), "t.json")
    >>> _ = SimilarityTransform(3, scale=1.1).save(path)
    >>> load_transform(path).scale
    1.1
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or PathLike, got {type(path).__name__}")
    p = Path(os.fspath(path))
    text = p.read_text()
    stripped = text.lstrip()
    if p.suffix.lower() == ".json" or stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{str(p)!r} is not valid JSON: {exc}") from None
        try:
            return RigidTransform.from_dict(data)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{str(p)!r} is not a fastct transform file: {exc}") from None
    return _parse_tfm(text, str(p))
