"""ReBRAC (Tarasov et al. 2023): TD3+BC with an actor BC weight, a critic BC weight on the next action, target
policy noise (0.2, clipped at 0.5) and an actor delay of 2, with LayerNorm critics, as the FQL code base
(agents/rebrac.py) runs it: a tanh actor whose mean layer starts at scale 1e-2, actor and target updates on every
`actor_freq`-th gradient step (the 2nd, 4th, ...), the next dataset row's action as the critic BC target (also across
an episode end, as the released code; `episode_aware_next_actions=True` uses the same action there instead)."""

import jax
import jax.numpy as jnp

from agents.common.networks import GaussianActor
from agents.common.rl import aggregate_q, apply_valid, critic_networks, normalized_q_loss, require_positive, td_discount
from configs.common import base_config
from configs.presets import fav_table6, qam_protocol, qam_table4, with_discount


def get_config():
    config = base_config('rebrac')
    # BC weights: the released defaults are 0 (plain TD3 + LayerNorm); every released command and FAV Table 6
    # (`--preset=paper`) set them per task.
    config.alpha_actor = 0.0  # Actor BC weight.
    config.alpha_critic = 0.0  # Critic BC weight on the next action.
    config.actor_noise = 0.2  # Target-policy smoothing noise std (and exploration noise online).
    config.actor_noise_clip = 0.5  # Clip of the target-policy noise.
    config.actor_freq = 2  # Actor and target updates every `actor_freq` critic steps.
    config.q_agg = 'min'  # Aggregation of the critic heads in the target and the actor's Q (released: min).
    config.actor_fc_scale = 0.01  # Variance scale of the actor's mean-layer initializer (released: 0.01).
    config.episode_aware_next_actions = False  # Critic BC target at an episode end: next row (released) or same.
    return config


def paper_preset(env_name):
    cols = {'alpha_actor': 'rebrac_alpha_actor', 'alpha_critic': 'rebrac_alpha_critic'}
    return with_discount(env_name, fav_table6(env_name, cols))


def validate(config):
    require_positive(config, 'actor_freq')
    if config.alpha_actor < 0 or config.alpha_critic < 0 or config.actor_noise < 0:
        raise ValueError('alpha_actor, alpha_critic and actor_noise must be non-negative.')


def networks(config, obs_dim, action_dim):
    actor = GaussianActor(
        config.actor_hidden_dims,
        action_dim,
        config.actor_layer_norm,
        const_std=True,
        tanh_mean=True,
        final_fc_init_scale=config.actor_fc_scale,
    )
    return {**critic_networks(config, obs_dim, action_dim), 'actor': (actor, ((obs_dim,),))}


def target_networks(config):
    return ('critic', 'actor')


def actor_step(config, step):
    """The gradient steps that update the actor and the targets: the released loop counts steps from 1 and updates
    when that count is a multiple of actor_freq (`step` here counts from 0). The trainer compiles the others without
    the actor loss, as the released code's `update(batch, full_update=False)` does."""
    return (step + 1) % config.actor_freq == 0


def target_update_weight(config, step):
    """Targets move only on actor steps (the FQL code base's ReBRAC)."""
    return actor_step(config, step).astype(jnp.float32)


def loss(learner, params, state, batch, rng, actor=True):
    cfg = learner.config
    obs, actions = batch['observations'], batch['actions']

    # Critic: target policy smoothing and the critic BC penalty on the next action.
    next_actions = learner.apply('actor', state.target_params, batch['next_observations'])[0]
    noise = jnp.clip(
        jax.random.normal(rng, next_actions.shape) * cfg.actor_noise, -cfg.actor_noise_clip, cfg.actor_noise_clip
    )
    next_actions = jnp.clip(next_actions + noise, -1, 1)
    next_qs = learner.apply('critic', state.target_params, batch['next_observations'], next_actions)
    next_q = aggregate_q(next_qs, cfg.q_agg, cfg.rho)
    data_next = batch['next_actions_in_episode' if cfg.episode_aware_next_actions else 'next_actions']
    next_q = next_q - cfg.alpha_critic * jnp.sum((next_actions - data_next) ** 2, axis=-1)
    target = batch['rewards'] + td_discount(cfg) * batch['masks'] * next_q
    qs = learner.apply('critic', params, obs, actions)
    valid = batch.get('valid')  # action chunks past an episode end count as zeros (horizon_length > 1)
    critic_loss = jnp.mean(apply_valid((qs - target) ** 2, valid, axis=1))

    info = {'critic/loss': critic_loss, 'critic/q_mean': qs.mean()}
    if not actor:  # a critic-only step (actor_step): no actor loss, as in the released code's critic-only update
        return critic_loss, info

    # Actor: -Q / mean|Q| + alpha_actor * BC, on every actor_freq-th step.
    pi = learner.apply('actor', params, obs)[0]
    q = aggregate_q(learner.apply('critic', state.params, obs, pi), cfg.q_agg, cfg.rho)
    q_loss = normalized_q_loss(q)
    bc_loss = jnp.mean(apply_valid(jnp.sum((pi - actions) ** 2, axis=-1), valid))
    actor_loss = q_loss + cfg.alpha_actor * bc_loss

    info.update({'actor/loss': actor_loss, 'actor/q_loss': q_loss, 'actor/q': q.mean(), 'actor/bc_loss': bc_loss})
    return critic_loss + actor_loss, info


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """Deterministic actor; temperature scales the clipped Gaussian exploration noise (0 at evaluation)."""
    actions = learner.apply('actor', params, observations)[0]
    noise = jnp.clip(
        jax.random.normal(rng, actions.shape) * learner.config.actor_noise * temperature,
        -learner.config.actor_noise_clip,
        learner.config.actor_noise_clip,
    )
    return jnp.clip(actions + noise, -1, 1)


def qam_preset(env_name):
    """ReBRAC as QAM Table 1 ran it (experiments/reproduce.py REBRAC, equal to QAM Table 4's (alpha, sigma)) under QAM's
    protocol (configs.presets.qam_protocol). The QAM code base's ReBRAC has no critic BC term: alpha_critic = 0."""
    values = qam_table4(env_name, {'alpha_actor': 'rebrac_alpha', 'actor_noise': 'rebrac_sigma'})
    return {**qam_protocol(env_name), **values, 'alpha_critic': 0.0}


PAPER = 'fav'  # FAV Table 6: the values behind FAV Tables 11-12's ReBRAC rows
PRESETS = {'fav': paper_preset, 'qam': qam_preset}
