"""ReBRAC (Tarasov et al. 2023): TD3+BC with an actor BC weight, a critic BC weight on the next action, target
policy noise (0.2, clipped at 0.5) and an actor delay of 2, with LayerNorm critics."""

import jax
import jax.numpy as jnp

from agents.common.networks import GaussianActor
from agents.common.rl import critic_networks, normalized_q_loss, require_positive
from configs.common import base_config
from configs.presets import fav_table6, with_discount


def get_config():
    config = base_config('rebrac')
    config.alpha_actor = 0.003  # Actor BC weight; per-task values in FAV Table 6 (`--preset=paper`).
    config.alpha_critic = 0.01  # Critic BC weight on the next action.
    config.actor_noise = 0.2  # Target-policy smoothing noise std (and exploration noise online).
    config.actor_noise_clip = 0.5  # Clip of the target-policy noise.
    config.actor_freq = 2  # Actor and target updates every `actor_freq` critic steps.
    config.q_agg = 'min'
    return config


def paper_preset(env_name):
    cols = {'alpha_actor': 'rebrac_alpha_actor', 'alpha_critic': 'rebrac_alpha_critic'}
    return with_discount(env_name, fav_table6(env_name, cols))


def validate(config):
    require_positive(config, 'actor_freq')
    if config.alpha_actor < 0 or config.alpha_critic < 0 or config.actor_noise < 0:
        raise ValueError('alpha_actor, alpha_critic and actor_noise must be non-negative.')


def networks(config, obs_dim, action_dim):
    actor = GaussianActor(config.actor_hidden_dims, action_dim, config.actor_layer_norm, const_std=True, tanh_mean=True)
    return {**critic_networks(config, obs_dim, action_dim), 'actor': (actor, ((obs_dim,),))}


def target_networks(config):
    return ('critic', 'actor')


def _full_update(config, step):
    return (step % config.actor_freq == 0).astype(jnp.float32)


def target_update_weight(config, step):
    """Targets move only on actor steps (the FQL code base's ReBRAC)."""
    return _full_update(config, step)


def loss(learner, params, state, batch, rng):
    cfg = learner.config
    obs, actions = batch['observations'], batch['actions']

    # Critic: target policy smoothing and the critic BC penalty on the next action.
    next_actions = learner.apply('actor', state.target_params, batch['next_observations'])[0]
    noise = jnp.clip(
        jax.random.normal(rng, next_actions.shape) * cfg.actor_noise, -cfg.actor_noise_clip, cfg.actor_noise_clip
    )
    next_actions = jnp.clip(next_actions + noise, -1, 1)
    next_q = learner.apply('critic', state.target_params, batch['next_observations'], next_actions).min(axis=0)
    next_q = next_q - cfg.alpha_critic * jnp.sum((next_actions - batch['next_actions']) ** 2, axis=-1)
    target = batch['rewards'] + cfg.discount * batch['masks'] * next_q
    qs = learner.apply('critic', params, obs, actions)
    critic_loss = jnp.mean((qs - target) ** 2)

    # Actor: -Q / mean|Q| + alpha_actor * BC, applied every actor_freq steps (masked inside jit).
    pi = learner.apply('actor', params, obs)[0]
    q = learner.apply('critic', state.params, obs, pi).min(axis=0)
    q_loss = normalized_q_loss(q)
    bc_loss = jnp.mean(jnp.sum((pi - actions) ** 2, axis=-1))
    actor_loss = q_loss + cfg.alpha_actor * bc_loss

    info = {
        'critic/loss': critic_loss,
        'critic/q_mean': qs.mean(),
        'actor/loss': actor_loss,
        'actor/q': q.mean(),
        'actor/bc_loss': bc_loss,
    }
    return critic_loss + _full_update(cfg, state.step) * actor_loss, info


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """Deterministic actor; temperature scales the clipped Gaussian exploration noise (0 at evaluation)."""
    actions = learner.apply('actor', params, observations)[0]
    noise = jnp.clip(
        jax.random.normal(rng, actions.shape) * learner.config.actor_noise * temperature,
        -learner.config.actor_noise_clip,
        learner.config.actor_noise_clip,
    )
    return jnp.clip(actions + noise, -1, 1)
