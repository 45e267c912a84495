"""Networks shared by all agents (one place). MLPs are 4 x 512 GELU by default (set by each agent's config)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.common.rl import apply_valid

# Variance scaling (fan_avg, uniform), as in the FQL / QAM reference code.
default_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')


ACTIVATIONS = {'gelu': nn.gelu, 'relu': nn.relu, 'swish': nn.swish}


class MLP(nn.Module):
    """Dense layers, each hidden one followed by the activation then LayerNorm (FQL), or LayerNorm then the
    activation with `ln_first` (the VGF code's MLP)."""

    hidden_dims: Sequence[int]
    activate_final: bool = False
    layer_norm: bool = False
    activation: str = 'gelu'
    ln_first: bool = False

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for i, size in enumerate(self.hidden_dims):
            x = nn.Dense(size, kernel_init=default_init)(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                if self.layer_norm and self.ln_first:
                    x = nn.LayerNorm()(x)
                x = act(x)
                if self.layer_norm and not self.ln_first:
                    x = nn.LayerNorm()(x)
        return x


class Critic(nn.Module):
    """Ensemble of `num_heads` Q(s, a) heads (vmapped parameters). Returns shape (num_heads, *batch)."""

    hidden_dims: Sequence[int]
    num_heads: int = 2
    layer_norm: bool = True
    activation: str = 'gelu'
    ln_first: bool = False

    @nn.compact
    def __call__(self, observations, actions):
        ensemble = nn.vmap(
            MLP,
            variable_axes={'params': 0},
            split_rngs={'params': True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_heads,
        )
        x = jnp.concatenate([observations, actions], axis=-1)
        mlp = ensemble((*self.hidden_dims, 1), False, self.layer_norm, self.activation, self.ln_first)
        return mlp(x)[..., 0]


class Value(nn.Module):
    """State value V(s) (IQL), a single head. Returns shape (*batch,)."""

    hidden_dims: Sequence[int]
    layer_norm: bool = True

    @nn.compact
    def __call__(self, observations):
        return MLP((*self.hidden_dims, 1), layer_norm=self.layer_norm)(observations)[..., 0]


class VectorField(nn.Module):
    """MLP on [s; x; t] -> R^action_dim. A flow velocity field when `times` is given (flow matching), a one-step
    noise-to-action policy pi(s, z) when it is not (FQL's one-step policy, FAV's policy)."""

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False
    activation: str = 'gelu'
    ln_first: bool = False

    @nn.compact
    def __call__(self, observations, x, times=None):
        inputs = [observations, x] if times is None else [observations, x, times]
        mlp = MLP((*self.hidden_dims, self.action_dim), False, self.layer_norm, self.activation, self.ln_first)
        return mlp(jnp.concatenate(inputs, -1))


class GaussianActor(nn.Module):
    """Diagonal Gaussian policy with a constant (std = 1), state-independent or state-dependent standard deviation, as
    the `Actor` of the FQL code base (utils/networks.py): GELU (or `activation`) MLP with an activated last hidden
    layer, a mean layer (and, with `state_dependent_std`, a log-std layer) initialized at variance scale
    `final_fc_init_scale` (1e-2 there), log std clipped to [`log_std_min`, 2] (-5 there). `tanh_mean` squashes the
    mean (ReBRAC's tanh-transformed actor, whose mode is tanh(mean)); the FQL code base's IQL actor is not squashed,
    and its SAC squashes the sample instead (tanh_gaussian)."""

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False
    const_std: bool = True
    tanh_mean: bool = True
    final_fc_init_scale: float = 1e-2
    state_dependent_std: bool = False
    log_std_min: float = -5.0
    activation: str = 'gelu'

    @nn.compact
    def __call__(self, observations):
        h = MLP(self.hidden_dims, activate_final=True, layer_norm=self.layer_norm, activation=self.activation)(
            observations
        )
        fc_init = nn.initializers.variance_scaling(self.final_fc_init_scale, 'fan_avg', 'uniform')
        means = nn.Dense(self.action_dim, kernel_init=fc_init)(h)
        if self.tanh_mean:
            means = jnp.tanh(means)
        if self.state_dependent_std:
            log_stds = nn.Dense(self.action_dim, kernel_init=fc_init)(h)
        elif self.const_std:
            log_stds = jnp.zeros_like(means)
        else:
            log_stds = jnp.broadcast_to(self.param('log_stds', nn.initializers.zeros, (self.action_dim,)), means.shape)
        return means, jnp.clip(log_stds, self.log_std_min, 2.0)


class LogScalar(nn.Module):
    """A trainable scalar kept as its log, initialized at log(`init_value`) (a SAC entropy temperature; the released
    LogParam)."""

    init_value: float = 1.0

    @nn.compact
    def __call__(self):
        return self.param('log_value', lambda _: jnp.full((), jnp.log(self.init_value), jnp.float32))


def gaussian_log_prob(means, log_stds, actions):
    """log N(actions; means, diag(exp(log_stds)^2)), summed over the action dimension."""
    z = (actions - means) * jnp.exp(-log_stds)
    return jnp.sum(-0.5 * z**2 - log_stds - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def tanh_log_det(x):
    """sum_i log(1 - tanh(x_i)^2) = sum_i 2 (log 2 - x_i - softplus(-2 x_i)), the stable form of distrax / TFP's Tanh
    bijector (its forward log-det-Jacobian)."""
    return jnp.sum(2.0 * (jnp.log(2.0) - x - jax.nn.softplus(-2.0 * x)), axis=-1)


def tanh_gaussian(means, log_stds, rng):
    """A sample a = tanh(x), x ~ N(means, exp(log_stds)^2), and log pi(a) = log N(x) - sum log(1 - tanh(x)^2),
    computed from x (a distrax / TFP tanh-transformed Gaussian's sample_and_log_prob)."""
    x = means + jnp.exp(log_stds) * jax.random.normal(rng, means.shape, means.dtype)
    return jnp.tanh(x), gaussian_log_prob(means, log_stds, x) - tanh_log_det(x)


def euler_flow(field_fn, noises, flow_steps: int):
    """Integrate a flow velocity field from noise (t=0) to actions (t=1) with `flow_steps` Euler steps, clip to
    [-1, 1]. `field_fn(x, t)` with t of shape (*batch, 1). Used by FQL, QAM and VGF (flow matching, FQL Eq. (2))."""

    def body(i, x):
        t = jnp.full((*x.shape[:-1], 1), i / flow_steps, dtype=x.dtype)
        return x + field_fn(x, t) / flow_steps

    return jnp.clip(jax.lax.fori_loop(0, flow_steps, body, noises), -1.0, 1.0)


def flow_field(config, obs_dim: int, action_dim: int):
    """networks() entry of a flow policy v(s, x, t) of the actor's size: (module, example input shapes)."""
    return VectorField(config.actor_hidden_dims, action_dim, config.actor_layer_norm), ((obs_dim,), (action_dim,), (1,))


def flow_sample(learner, name: str, params, observations, noises):
    """`flow_steps` Euler steps of the flow network `name` from `noises`, clipped (euler_flow)."""
    field = lambda x, t: learner.apply(name, params, observations, x, t)  # noqa: E731
    return euler_flow(field, noises, learner.config.flow_steps)


def flow_matching_loss(field_fn, actions, rng, valid=None):
    """Conditional flow matching with the linear path x_t = (1 - t) x0 + t x1, x0 ~ N(0, I) (FQL Eq. (1),
    QAM Eq. (17)). `field_fn(x_t, t)`; returns the mean squared velocity error (samples with valid = 0 count as zero,
    agents.common.rl.apply_valid)."""
    x_rng, t_rng = jax.random.split(rng)
    x0 = jax.random.normal(x_rng, actions.shape, actions.dtype)
    t = jax.random.uniform(t_rng, (*actions.shape[:-1], 1), actions.dtype)
    x_t = (1 - t) * x0 + t * actions
    return jnp.mean(apply_valid((field_fn(x_t, t) - (actions - x0)) ** 2, valid))
