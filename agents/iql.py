"""Implicit Q-Learning (Kostrikov et al. 2022): expectile value regression, TD critic on V(s'), and an AWR actor
exp(alpha * (Q - V)) * log pi(a|s) with inverse temperature alpha, as the FQL code base (agents/iql.py) runs it:
an unsquashed Gaussian actor N(a; mu(s), 1) whose mean layer starts at scale 1e-2, the clipped mean at evaluation,
Q aggregated over the two heads with `q_agg` (the released code: min), the critic loss summed over the heads."""

import jax
import jax.numpy as jnp

from agents.common.networks import GaussianActor, Value, gaussian_log_prob
from agents.common.rl import aggregate_q, apply_valid, critic_networks, require_positive, td_discount
from configs.common import base_config
from configs.presets import fav_table6, with_discount


def get_config():
    config = base_config('iql')
    config.expectile = 0.9  # Expectile of the value regression.
    config.alpha = 10.0  # AWR inverse temperature; per-task values in FAV Table 6 (`--preset=paper`).
    config.const_std = True  # Unit-std Gaussian actor (the FQL code base's IQL); False learns a log std.
    config.actor_fc_scale = 0.01  # Variance scale of the actor's mean-layer initializer (1e-2 in the released code).
    config.q_agg = 'min'  # Aggregation of the critic heads in the value target and the advantage (released: min).
    return config


def paper_preset(env_name):
    return with_discount(env_name, fav_table6(env_name, {'alpha': 'iql_alpha'}))


def validate(config):
    require_positive(config, 'alpha')
    if not 0.0 < config.expectile < 1.0:
        raise ValueError(f'expectile must be in (0, 1), got {config.expectile}.')


def networks(config, obs_dim, action_dim):
    return {
        **critic_networks(config, obs_dim, action_dim),
        'value': (Value(config.value_hidden_dims, config.layer_norm), ((obs_dim,),)),
        'actor': (
            GaussianActor(
                config.actor_hidden_dims,
                action_dim,
                config.actor_layer_norm,
                config.const_std,
                tanh_mean=False,
                final_fc_init_scale=config.actor_fc_scale,
            ),
            ((obs_dim,),),
        ),
    }


def target_networks(config):
    return ('critic',)


def expectile_loss(diff, expectile):
    """|tau - 1(diff < 0)| * diff^2 (IQL Eq. (5))."""
    weight = jnp.where(diff > 0, expectile, 1 - expectile)
    return weight * diff**2


def loss(learner, params, state, batch, rng):
    cfg = learner.config
    obs, actions = batch['observations'], batch['actions']

    # Value: expectile regression onto the aggregated target critic heads (IQL Eq. (5)).
    q_target = aggregate_q(learner.apply('critic', state.target_params, obs, actions), cfg.q_agg, cfg.rho)
    v = learner.apply('value', params, obs)
    valid = batch.get('valid')  # action chunks past an episode end count as zeros (horizon_length > 1)
    value_loss = apply_valid(expectile_loss(q_target - v, cfg.expectile), valid).mean()

    # Critic: TD onto V(s') (no gradient into V).
    next_v = learner.apply('value', state.params, batch['next_observations'])
    target = batch['rewards'] + td_discount(cfg) * batch['masks'] * next_v
    qs = learner.apply('critic', params, obs, actions)
    critic_loss = jnp.mean(
        apply_valid(jnp.sum((qs - target) ** 2, axis=0), valid)
    )  # summed over heads, as the released code

    # Actor: advantage-weighted regression with the current critic and value (no gradients into them).
    q = aggregate_q(learner.apply('critic', state.params, obs, actions), cfg.q_agg, cfg.rho)
    adv = q - learner.apply('value', state.params, obs)
    weights = jnp.minimum(jnp.exp(adv * cfg.alpha), 100.0)
    means, log_stds = learner.apply('actor', params, obs)
    actor_loss = -apply_valid(weights * gaussian_log_prob(means, log_stds, actions), valid).mean()

    info = {
        'value/loss': value_loss,
        'value/v_mean': v.mean(),
        'critic/loss': critic_loss,
        'critic/q_mean': qs.mean(),
        'critic/target_mean': target.mean(),
        'actor/loss': actor_loss,
        'actor/adv': adv.mean(),
        'actor/weight': weights.mean(),
        'actor/mse': jnp.mean((means - actions) ** 2),
    }
    return value_loss + critic_loss + actor_loss, info


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """Mean action at temperature 0 (evaluation), a Gaussian sample otherwise (exploration)."""
    means, log_stds = learner.apply('actor', params, observations)
    noise = jax.random.normal(rng, means.shape) * jnp.exp(log_stds) * temperature
    return jnp.clip(means + noise, -1, 1)


PAPER = 'fav'  # FAV Table 6: the values behind FAV Tables 11-12's baseline rows
PRESETS = {'fav': paper_preset}
