"""RBF kernels shared by the particle methods (FAV, VGF). Conventions: k(x, y) = exp(-||x - y||^2 / tau) with the
kernel temperature tau = 2 sigma^2 (FAV Sec. 3.2 / Table 6); particles on the second-to-last axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sq_dists(x: jax.Array, y: jax.Array) -> jax.Array:
    """Pairwise squared distances ||x_i - y_j||^2: x (..., N, d), y (..., M, d) -> (..., N, M)."""
    return jnp.sum((x[..., :, None, :] - y[..., None, :, :]) ** 2, axis=-1)


def rbf(x: jax.Array, y: jax.Array, tau) -> jax.Array:
    """k(x_i, y_j) = exp(-||x_i - y_j||^2 / tau), shape (..., N, M)."""
    return jnp.exp(-sq_dists(x, y) / tau)


def median_bandwidth(x: jax.Array) -> jax.Array:
    """Median heuristic of SVGD (Liu & Wang 2016): h = med^2 / log(N + 1) over the pairwise squared distances of the
    N particles (..., N, d); use as tau in k = exp(-||x - y||^2 / h). Returns (...,)."""
    n = x.shape[-2]
    d2 = sq_dists(x, x).reshape(*x.shape[:-2], n * n)
    med2 = jnp.median(d2, axis=-1)
    return jnp.maximum(med2 / jnp.log(n + 1.0), 1e-6)


def kde_score(x: jax.Array, refs: jax.Array, tau) -> jax.Array:
    """Score of the Gaussian KDE of the reference points, grad_x log sum_m k(x, r_m) (FAV Eqs. (15)-(16), the
    mean-shift vector): sum_m w_m (r_m - x) / sigma^2 with self-normalized weights w_m = softmax_m(-||x - r_m||^2 /
    tau), sigma^2 = tau / 2. x (..., N, d) evaluation points, refs (..., M, d) reference points -> (..., N, d)."""
    w = jax.nn.softmax(-sq_dists(x, refs) / tau, axis=-1)  # (..., N, M), log-sum-exp stable
    return (w @ refs - x) * (2.0 / tau)
