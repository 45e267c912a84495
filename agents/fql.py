"""Flow Q-Learning (Park, Li, Levine 2025): a flow-matching BC policy (10 Euler steps) and a one-step
noise-conditioned policy trained with -Q + alpha * distillation toward the BC flow."""

import jax
import jax.numpy as jnp

from agents.common.networks import VectorField, flow_field, flow_matching_loss, flow_sample
from agents.common.rl import critic_networks, critic_td_loss, normalized_q_loss, require_positive
from configs.common import base_config
from configs.presets import MIN_Q_AGG_TASKS, fav_table6, qam_protocol, qam_table4, with_discount


def get_config():
    config = base_config('fql')
    config.alpha = 10.0  # Distillation weight (FQL Eq. (6)); per-task values in FAV Table 6 (`--preset=paper`).
    config.flow_steps = 10  # Euler steps of the BC flow.
    config.normalize_q_loss = False  # Divide the Q loss by stopgrad(mean |Q|).
    return config


def paper_preset(env_name):
    values = with_discount(env_name, fav_table6(env_name, {'alpha': 'fql_alpha'}))
    if env_name.startswith(MIN_Q_AGG_TASKS):
        values['q_agg'] = 'min'  # the FQL README's commands for these tasks pass --agent.q_agg=min
    return values


def validate(config):
    require_positive(config, 'alpha', 'flow_steps')


def networks(config, obs_dim, action_dim):
    return {
        **critic_networks(config, obs_dim, action_dim),
        'bc_flow': flow_field(config, obs_dim, action_dim),
        'onestep': (
            VectorField(config.actor_hidden_dims, action_dim, config.actor_layer_norm),
            ((obs_dim,), (action_dim,)),
        ),
    }


def target_networks(config):
    return ('critic',)


def flow_actions(learner, params, observations, noises):
    """BC flow actions from noise (Euler integration of the velocity field)."""
    return flow_sample(learner, 'bc_flow', params, observations, noises)


def loss(learner, params, state, batch, rng):
    cfg = learner.config
    obs, actions = batch['observations'], batch['actions']
    next_rng, fm_rng, noise_rng = jax.random.split(rng, 3)

    next_actions = sample_actions(learner, state.params, batch['next_observations'], next_rng)
    critic_loss, info = critic_td_loss(learner, params, state, batch, next_actions)

    # BC flow matching (FQL Eq. (1)).
    bc_loss = flow_matching_loss(
        lambda x, t: learner.apply('bc_flow', params, obs, x, t), actions, fm_rng, batch.get('valid')
    )
    # Distillation of the (fixed) BC flow into the one-step policy, and the Q term (FQL Eq. (6)).
    noises = jax.random.normal(noise_rng, actions.shape)
    target = jax.lax.stop_gradient(flow_actions(learner, state.params, obs, noises))
    onestep = learner.apply('onestep', params, obs, noises)
    distill_loss = jnp.mean((onestep - target) ** 2)
    q = learner.apply('critic', state.params, obs, jnp.clip(onestep, -1, 1)).mean(axis=0)
    q_loss = normalized_q_loss(q) if cfg.normalize_q_loss else -q.mean()
    actor_loss = bc_loss + cfg.alpha * distill_loss + q_loss

    info.update(
        {
            'actor/loss': actor_loss,
            'actor/bc_flow_loss': bc_loss,
            'actor/distill_loss': distill_loss,
            'actor/q_loss': q_loss,
            'actor/q': q.mean(),
        }
    )
    return critic_loss + actor_loss, info


def sample_actions(learner, params, observations, rng, temperature=1.0):
    noises = jax.random.normal(rng, (*observations.shape[:-1], learner.action_dim))
    return jnp.clip(learner.apply('onestep', params, observations, noises), -1, 1)


def qam_preset(env_name):
    """FQL as QAM Table 1 ran it (experiments/reproduce.py FQL, equal to QAM Table 4's fql_alpha) under QAM's protocol
    (configs.presets.qam_protocol)."""
    return {**qam_protocol(env_name), **qam_table4(env_name, {'alpha': 'fql_alpha'})}


PAPER = 'fav'  # FAV Table 6: the values behind FAV Tables 11-12's FQL rows
PRESETS = {'fav': paper_preset, 'qam': qam_preset}
