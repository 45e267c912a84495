"""Linear-Gaussian check of QAM's two SDE schemes (agents/qam.py `sde_scheme`).

Behavior N(mu0, std^2) in 1-D with its exact flow-matching field f_beta, Q(a) = c a, T flow steps. The tilt
pi_beta exp(tau Q) is N(mu0 + tau c std^2, std^2), so the exact mean shift is tau c std^2. With a linear f_beta and a
linear Q the lean adjoint does not depend on the states, and the minimizer of the adjoint-matching loss is one control
u_i per step; the script takes it from the agent's own loss (one Newton step, the loss being quadratic in u), acts
with the Euler ODE of f_beta + u from N(0, 1) (the acting field of either `residual` setting at that optimum) and
prints the acted policy's mean shift as a multiple of the exact one.

    .venv/bin/python scripts/qam_scheme_check.py [--flow_steps=10] [--stds=0.1,0.3,0.6]
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents import qam  # noqa: E402


def behavior_field(mu0: float, std: float):
    """Exact flow-matching velocity of x_t = (1 - t) x0 + t x1, x0 ~ N(0, 1), x1 ~ N(mu0, std^2)."""

    def f(a, t):
        var = (1 - t) ** 2 + t**2 * std**2
        return mu0 + (t * std**2 - (1 - t)) / var * (a - t * mu0)

    return f


def mean_shift_ratio(scheme: str, std: float, flow_steps: int = 10, mu0: float = 0.0, c: float = 1.0, tau: float = 1.0):
    """Mean shift of the acted policy at the adjoint-matching optimum, divided by the exact tilt's tau c std^2."""
    with jax.enable_x64(True):
        co = qam.sde_coefficients(flow_steps, scheme)
        f = behavior_field(mu0, std)
        zeros = jnp.zeros((flow_steps, 1, 1))
        traj = qam.memoryless_sde(f, f, jnp.zeros((1, 1)), zeros, co)  # any states: the adjoint ignores them here
        adjoints = qam.lean_adjoint(f, traj, jnp.full((1, 1), -tau * c), co)  # g_T = -tau grad Q
        paired = qam.paired_adjoints(adjoints, co)
        grad = jax.grad(lambda u: qam.adjoint_matching_loss(u, paired, co))
        g0 = grad(zeros)
        control = -g0 / (grad(jnp.ones_like(zeros)) - g0)  # Newton step on a quadratic with diagonal Hessian
        h = 1.0 / flow_steps

        def acted_mean(u):  # Euler ODE of the affine field f_beta + u maps the mean exactly
            m = 0.0
            for i in range(flow_steps):
                m = m + h * (float(f(m, i * h)) + u[i])
            return m

        u = np.asarray(control)[:, 0, 0]
        return (acted_mean(u) - acted_mean(np.zeros_like(u))) / (tau * c * std**2)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--flow_steps', type=int, default=10)
    p.add_argument('--stds', default='0.1,0.3,0.6')
    args = p.parse_args(argv)
    print(f'mean shift of the acted policy / exact tilt (tau c std^2), T = {args.flow_steps}')
    print('| behavior std | released scheme | exact scheme |')
    print('|---|---|---|')
    for std in (float(s) for s in args.stds.split(',')):
        r = {s: mean_shift_ratio(s, std, args.flow_steps) for s in qam.SDE_SCHEMES}
        print(f'| {std:g} | {r["released"]:.2f}x | {r["exact"]:.2f}x |')


if __name__ == '__main__':
    main()
