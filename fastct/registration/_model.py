"""Transform parametrisation: parameter vector <-> transform, and its Jacobians."""

from __future__ import annotations

import math

import numpy as np

from ..transforms import RigidTransform, _flip, _make, _rot2, versor_matrix
from ._inputs import _pad3

_FD_STEP = 1e-6


class _Model:
    """Parameter vector <-> transform, and dq/dtheta, in 3-D index space (2-D embedded)."""

    def __init__(self, ndim: int, kind: str, center: np.ndarray):
        self.ndim = ndim
        self.kind = kind
        self.center = np.asarray(center, dtype=float)  # ndim
        self.center3 = _pad3(tuple(self.center), 0.0)
        self.n_rot = 3 if ndim == 3 else 1
        self.n = self.n_rot + ndim + (1 if kind == "similarity" else 0)

    def _rot(self, theta: np.ndarray) -> np.ndarray:
        return versor_matrix(theta[:3]) if self.ndim == 3 else _rot2(theta[0])

    def _scale(self, theta: np.ndarray) -> float:
        return float(theta[-1]) if self.kind == "similarity" else 1.0

    def _embed(self, m: np.ndarray) -> np.ndarray:
        if self.ndim == 3:
            return m
        out = np.zeros((3, 3))
        out[1:, 1:] = m
        return out

    def linear(self, theta: np.ndarray) -> np.ndarray:
        return self._scale(theta) * self._rot(theta)

    def translation(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(theta[self.n_rot : self.n_rot + self.ndim], dtype=float)

    def affine3(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A, off) with q = A @ p + off in 3-D (2-D: identity on the dummy axis)."""
        lin = self.linear(theta)
        off = self.center + self.translation(theta) - lin @ self.center
        a3 = np.eye(3)
        if self.ndim == 3:
            a3 = lin
            off3 = off
        else:
            a3[1:, 1:] = lin
            off3 = np.array([0.0, *off])
        return np.ascontiguousarray(a3), np.ascontiguousarray(off3)

    def jacobians(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per parameter (J, e): dq/dtheta_k = J @ (p - c) + e (3-D embedded)."""
        s = self._scale(theta)
        out = []
        for k in range(self.n_rot):
            hi, lo = theta.copy(), theta.copy()
            hi[k] += _FD_STEP
            lo[k] -= _FD_STEP
            d = s * (self._rot(hi) - self._rot(lo)) / (2 * _FD_STEP)
            out.append((self._embed(d), np.zeros(3)))
        for k in range(self.ndim):
            e = np.zeros(3)
            e[3 - self.ndim + k] = 1.0
            out.append((np.zeros((3, 3)), e))
        if self.kind == "similarity":
            out.append((self._embed(self._rot(theta)), np.zeros(3)))
        return out

    def coefficients(self, theta: np.ndarray) -> np.ndarray:
        """(n, 7) rows ``(a_k, e_k, s_k)``: ``dq/dtheta_k = a_k x w + s_k w + e_k`` with
        ``w = A (p - c)`` (see :mod:`fastct._kernels.registration`)."""
        a3, _ = self.affine3(theta)
        inv = np.linalg.inv(a3)
        act = slice(3 - self.ndim, 3)
        rows = []
        for j, e in self.jacobians(theta):
            m = j @ inv  # dq/dtheta = m @ w + e
            axis = 0.5 * np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]])
            scale = float(np.trace(m[act, act])) / self.ndim
            rows.append(np.concatenate([axis, e, [scale]]))
        return np.asarray(rows)

    def transform(self, theta: np.ndarray) -> RigidTransform:
        return _make(
            self.ndim,
            self._rot(theta),
            self.translation(theta),
            self.center,
            self._scale(theta),
            similarity=self.kind == "similarity",
        )

    def theta_of(self, t: RigidTransform) -> np.ndarray:
        """Parameters of transform ``t`` re-expressed about this model's centre."""
        rot = t.rotation
        theta = np.zeros(self.n)
        if self.ndim == 3:
            q = _transform_versor(rot)
            theta[:3] = q[1:]
        else:
            r = _flip(rot)
            theta[0] = math.atan2(r[1, 0], r[0, 0])
        theta[self.n_rot : self.n_rot + self.ndim] = t.apply(self.center) - self.center
        if self.kind == "similarity":
            theta[-1] = t.scale
        return theta

    def bounds(self) -> list[tuple[float, float]]:
        b = [(-0.95, 0.95)] * self.n_rot if self.ndim == 3 else [(-math.pi, math.pi)]
        b += [(-np.inf, np.inf)] * self.ndim
        if self.kind == "similarity":
            b.append((0.2, 5.0))
        return b


def _transform_versor(rot: np.ndarray) -> np.ndarray:
    from ..transforms import _matrix_to_quat

    return _matrix_to_quat(rot)
