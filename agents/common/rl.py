"""Loss pieces shared by several agents (critic targets), written once."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def aggregate_q(qs: jax.Array, how: str, rho: float = 0.5) -> jax.Array:
    """Aggregate critic heads (axis 0): 'mean', 'min', or 'pessimistic' = mean - rho * std (QAM Eq. (26))."""
    if how == 'mean':
        return qs.mean(axis=0)
    if how == 'min':
        return qs.min(axis=0)
    if how == 'pessimistic':
        return qs.mean(axis=0) - rho * qs.std(axis=0)
    raise ValueError(f'Unknown q aggregation {how!r}.')


def td_discount(config) -> float:
    """The bootstrap discount: gamma^h after a chunk of h = horizon_length actions (gamma for h = 1), as the released
    QAM code's critic_loss (discount ** horizon_length)."""
    return config.discount**config.horizon_length


def apply_valid(x: jax.Array, valid: jax.Array | None, axis: int = 0) -> jax.Array:
    """x with the samples (indexed by `axis`) whose action chunk runs past an episode end zeroed: the released QAM
    code's `loss * batch['valid'][..., -1]` before the mean (invalid samples count as zeros in the mean). `valid` is
    None for horizon_length = 1, and x is returned as it is."""
    if valid is None:
        return x
    axis = axis % x.ndim
    return x * valid.reshape(valid.shape + (1,) * (x.ndim - axis - 1))


def critic_td_loss(learner, params, state, batch, next_actions):
    """TD regression of every critic head onto y = r + gamma^h * mask * agg_k Q_target_k(s', a'), a' from the policy
    (FQL Eq. (3); FAV Sec. 5.1; h = horizon_length, the chunk's summed reward and the state after it for h > 1).
    `next_actions` must already be computed without gradients."""
    cfg = learner.config
    next_qs = learner.apply(
        'critic', state.target_params, batch['next_observations'], jax.lax.stop_gradient(next_actions)
    )
    next_q = aggregate_q(next_qs, cfg.q_agg, cfg.rho)
    target = batch['rewards'] + td_discount(cfg) * batch['masks'] * next_q
    qs = learner.apply('critic', params, batch['observations'], batch['actions'])
    loss = jnp.mean(apply_valid((qs - target) ** 2, batch.get('valid'), axis=1))
    return loss, {'critic/loss': loss, 'critic/q_mean': qs.mean(), 'critic/q_max': qs.max(), 'critic/q_min': qs.min()}


def critic_networks(config, obs_dim: int, action_dim: int) -> dict:
    """The shared critic ensemble entry of an agent's `networks()`."""
    from agents.common.networks import Critic

    return {
        'critic': (
            Critic(config.value_hidden_dims, num_heads=config.num_critics, layer_norm=config.layer_norm),
            ((obs_dim,), (action_dim,)),
        )
    }


def require_positive(config, *keys: str) -> None:
    for k in keys:
        if not config[k] > 0:
            raise ValueError(f'{k} must be positive, got {config[k]}.')


def normalized_q_loss(q: jax.Array) -> jax.Array:
    """-Q / stopgrad(mean |Q|) (TD3+BC / ReBRAC normalization). The floor keeps it finite when Q is exactly 0 (e.g. a
    zero observation and zero-initialized biases at the first step)."""
    return -(q / jax.lax.stop_gradient(jnp.maximum(jnp.abs(q).mean(), 1e-6))).mean()
