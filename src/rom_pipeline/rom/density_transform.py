"""Pointwise invertible density transform applied before POD (science.md §4)."""
from __future__ import annotations

import numpy as np

TRANSFORM_KINDS = ("raw", "sqrt", "log")


class DensityTransform:
    """Pointwise invertible transform of densities applied before POD.

    ``raw``: ``x = rho``; ``sqrt``: ``x = sqrt(rho + eps)``, inverse ``rho = x^2 - eps``;
    ``log``: ``x = log(rho + eps)``, inverse ``rho = exp(x) - eps``.

    Args:
        kind: ``"raw"``, ``"sqrt"`` or ``"log"``.
        eps: offset ``eps >= 0`` (must be > 0 for ``log``) in density units.
    """

    def __init__(self, kind: str = "raw", eps: float = 1e-10):
        if kind not in TRANSFORM_KINDS:
            raise ValueError(
                f"transform kind must be one of {TRANSFORM_KINDS}, got {kind!r}: "
                "set rom.transform to 'raw', 'sqrt' or 'log'"
            )
        eps = float(eps)
        if not np.isfinite(eps) or eps < 0:
            raise ValueError(f"transform eps must be a finite number >= 0, got {eps!r}: fix rom.transform_eps")
        if kind == "log" and eps == 0:
            raise ValueError("the log transform needs eps > 0 (log(0) = -inf): set rom.transform_eps, e.g. 1e-10")
        self.kind = kind
        self.eps = eps

    def forward(self, rho: np.ndarray) -> np.ndarray:
        """Density (any shape) -> transformed field of the same shape (float64)."""
        rho = np.asarray(rho, dtype=np.float64)
        if self.kind == "raw":
            return rho
        lowest = float(rho.min()) + self.eps if rho.size else 0.0
        if self.kind == "sqrt":
            if lowest < 0:
                raise ValueError(
                    f"sqrt transform needs rho + eps >= 0 but min(rho) + eps = {lowest:.3g}: clip negative "
                    "densities or raise rom.transform_eps"
                )
            return np.sqrt(rho + self.eps)
        if lowest <= 0:
            raise ValueError(
                f"log transform needs rho + eps > 0 but min(rho) + eps = {lowest:.3g}: clip negative "
                "densities or raise rom.transform_eps"
            )
        return np.log(rho + self.eps)

    def inverse(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Transformed field (any shape) -> density of the same shape (float64); ``out`` (e.g.
        ``x`` itself, float64 of x's shape) receives it instead of a new array."""
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "raw":
            if out is None or out is x:
                return x
            np.copyto(out, x)
            return out
        if out is None:
            out = np.empty_like(x)
        if self.kind == "sqrt":
            np.multiply(x, x, out=out)
            out -= self.eps
            return out
        with np.errstate(over="ignore"):
            np.exp(x, out=out)
        out -= self.eps
        return out

    def __repr__(self) -> str:
        return f"DensityTransform(kind={self.kind!r}, eps={self.eps!r})"
