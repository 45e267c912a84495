"""FBRAC, flow behavior-regularized actor-critic (the FQL paper's baseline, Park, Li, Levine 2025: a BC flow policy
that also maximizes Q by backpropagation through its Euler steps), as the released QAM code runs it
(github.com/ColinQiyangLi/qam @ f93efd2, agents/fbrac.py; the FQL paper's own FBRAC code is not public,
seohongpark/fql issue #14).

Networks: a flow policy v(s, x, t) (the released `actor_flow`) and the critic ensemble Q_k(s, a) (K = 10 heads) with
a Polyak target. One Adam step on critic + actor loss (no gradient clipping), with the released formulas:
    critic (critic_loss): TD of every head onto y = r + gamma^h m (mean_k - rho std_k) Qbar_k(s', a'), a' from
                          sample_actions of the current networks (= agents.common.rl.critic_td_loss)
    actor  (actor_loss):  L_FM + (-mean_batch mean_k Q_k(s, a_pi)) / alpha, where L_FM is flow matching on the data
                          (mean over batch and dims, invalid chunks as zeros) and a_pi = clip(Euler_{flow_steps}(v, z)),
                          z ~ N(0, I), differentiated through every Euler step into v (BPTT); the current critic's
                          head mean, no gradient into the critic, every sample counted (no `valid` factor).
`alpha` weighs BC against Q: a larger alpha is closer to BC (the released Q term is divided by it).

Acting (sample_actions, also the critic's next actions): `best_of_n` flow samples (Euler from N(0, I), clipped), the
one with the highest current-critic head mean kept (released default and reproduce.py: best_of_n = 1, one sample);
stochastic at every temperature, as the released evaluation.
"""

import math

import jax
import jax.numpy as jnp

from agents.common.networks import flow_field, flow_matching_loss, flow_sample
from agents.common.rl import critic_networks, critic_td_loss
from configs.common import base_config
from configs.presets import qam_protocol, qam_reproduce


def get_config():
    config = base_config('fbrac')
    # Critic as released (get_config num_qs=10, rho=0.5; critic_loss: target mean - rho * std over the heads).
    config.num_critics = 10  # Critic heads K.
    config.q_agg = 'pessimistic'  # Target aggregation mean - rho * std (QAM Eq. (26)).
    config.rho = 0.5  # Pessimism rho (QAM Table 3: 0.5; humanoidmaze 0 in the qam preset).
    # BC coefficient: actor loss L_FM - Q / alpha (released default 100; per domain with --preset=qam).
    config.alpha = 100.0
    config.flow_steps = 10  # Euler steps of the flow policy (also backpropagated through by the Q term).
    config.best_of_n = 1  # Flow samples per state when acting, the highest-Q one kept (released default 1).
    return config


def validate(config):
    if not (0.0 < config.alpha < math.inf):
        raise ValueError(
            f'alpha (FBRAC BC coefficient, actor loss L_FM - Q / alpha) must be in (0, inf), got {config.alpha}.'
        )
    if config.flow_steps < 1:
        raise ValueError(f'flow_steps must be >= 1, got {config.flow_steps}.')
    if not (isinstance(config.best_of_n, int) and config.best_of_n >= 1):
        raise ValueError(f'best_of_n must be an integer >= 1, got {config.best_of_n}.')


def networks(config, obs_dim, action_dim):
    return {
        **critic_networks(config, obs_dim, action_dim),
        'actor': flow_field(config, obs_dim, action_dim),
    }


def target_networks(config):
    return ('critic',)


def flow_actions(learner, params, observations, noises):
    """Euler integration of the policy flow from `noises`, clipped (released compute_flow_actions); differentiable in
    `params` (the actor loss backpropagates through it)."""
    return flow_sample(learner, 'actor', params, observations, noises)


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """The best of `best_of_n` flow samples by the current critic's head mean (one sample: that sample)."""
    n = learner.config.best_of_n
    noises = jax.random.normal(rng, (*observations.shape[:-1], n, learner.action_dim))
    obs = jnp.repeat(observations[..., None, :], n, axis=-2)
    actions = flow_actions(learner, params, obs, noises)
    if n == 1:
        return actions[..., 0, :]
    q = learner.apply('critic', params, obs, actions).mean(axis=0)  # (*batch, n)
    best = jnp.argmax(q, axis=-1)
    return jnp.take_along_axis(actions, best[..., None, None], axis=-2)[..., 0, :]


def loss(learner, params, state, batch, rng):
    cfg = learner.config
    obs, actions = batch['observations'], batch['actions']
    next_rng, fm_rng, noise_rng = jax.random.split(rng, 3)

    next_actions = sample_actions(learner, state.params, batch['next_observations'], next_rng)
    critic_loss, info = critic_td_loss(learner, params, state, batch, next_actions)

    # BC flow matching on the data, and -Q of the policy's own actions, backpropagated through the Euler steps.
    bc_loss = flow_matching_loss(
        lambda x, t: learner.apply('actor', params, obs, x, t), actions, fm_rng, batch.get('valid')
    )
    noises = jax.random.normal(noise_rng, actions.shape, actions.dtype)
    pi_actions = flow_actions(learner, params, obs, noises)
    q = learner.apply('critic', state.params, obs, pi_actions).mean(axis=0)
    q_loss = -q.mean()
    actor_loss = bc_loss + q_loss / cfg.alpha

    info.update(
        {
            'actor/loss': actor_loss,
            'actor/bc_flow_loss': bc_loss,
            'actor/q_loss': q_loss,
            'actor/q': q.mean(),
        }
    )
    return critic_loss + actor_loss, info


def qam_preset(env_name):
    """FBRAC as QAM Table 1 ran it: QAM's protocol (configs.presets.qam_protocol: K = 10, rho, discount, chunks of 5 on
    manipulation) and reproduce.py's alpha per domain. reproduce.py differs from QAM Table 4's fbrac_alpha column on
    one domain: puzzle-3x3-sparse, 0.03 there and 0.3 in Table 4 (the command wins; --agent.alpha=0.3 for the
    table's value). The other nine domains agree."""
    return {**qam_protocol(env_name), **qam_reproduce('fbrac', env_name, {'alpha': 'alpha'})}


PAPER = 'qam'  # QAM Table 1 ran it (FAV Table 6 has no FBRAC column; the FQL paper's FBRAC code is unreleased)
PRESETS = {'qam': qam_preset}
