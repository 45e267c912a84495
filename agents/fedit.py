"""FEdit: a flow BC policy with an edit policy (the flow + edit policy of EXPO, Dong et al. 2025, arXiv 2507.07986),
as the released QAM code runs it for QAM Table 1 (github.com/ColinQiyangLi/qam @ f93efd2, agents/fedit.py).

Networks: a behavior flow f_beta(s, a, t) trained by flow matching (its online parameters act: FEdit keeps no target
of it); the critic Q(s, a) (K heads, TD target mean - rho * std); an edit policy pi_omega(. | s, a~) (the released
TanhNormal on [s; a~], agents/qam.py EditPolicy: log std clipped to [-20, 2]); a SAC temperature alpha (initialised at
1). The edit is the formula of QAM-EDIT's edit policy (agents/qam.py, QAM Eq. (30)) applied to the BC flow:

    a~ = clip(ODE(f_beta, e), -1, 1), e ~ N(0, I)                              the flow action (flow_steps Euler steps)
    a  = clip(a~ + sigma_a delta, -1, 1), delta ~ tanh-Gaussian pi_omega(. | s, a~)     the edited action
    critic: mean_{k,batch} valid (Q_k(s, a_data) - y)^2,  y = r + gamma^h m agg_k Qtarget_k(s', a'),
            a' ~ the edited policy at s'
    edit:   mean_batch [-mean_k Q_k(s, a) + alpha log pi_omega(delta | s, a~)]    (Q and alpha current, no gradient)
    alpha:  log-parameterized alpha * (H - edit_entropy_target * dim A),  H = -mean stopgrad(log pi_omega)
    flow:   flow matching (FQL Eq. (1)), masked by `valid`
One Adam over all networks without gradient clipping (the released create()); Polyak target of the critic only.
Acting (evaluation, online data, TD targets): the edited flow action, stochastic at every temperature (released
sample_actions). The released best_of_n (default 1, never set by reproduce.py) is not implemented, as in tiltbench's
QAM.
"""

import math

import jax
import jax.numpy as jnp

from agents.common.networks import flow_field, flow_matching_loss
from agents.common.rl import critic_networks, critic_td_loss, require_positive
from agents.fql import flow_actions
from agents.qam import EditPolicy, LogScalar, edit_actions
from configs.common import base_config
from configs.presets import qam_protocol, qam_reproduce


def get_config():
    config = base_config('fedit')
    # Critic (the released get_config: num_qs=10, rho=0.5; its critic target is always mean - rho * std).
    config.num_critics = 10  # Critic heads K.
    config.q_agg = 'pessimistic'  # TD target aggregation mean - rho * std (hard-coded in the released critic_loss).
    config.rho = 0.5  # Pessimism rho (QAM protocol: 0 on humanoidmaze, via the preset).
    config.flow_steps = 10  # Euler steps of the BC flow.
    # L_inf edit radius (released edit_scale, QAM Table 4 fedit_sigma_a). The released default is 0: the edit has no
    # effect and the BC flow acts (the edit policy is still trained); --preset=qam sets reproduce.py's 0.1-0.8.
    config.sigma_a = 0.0
    # SAC target entropy of the edit policy per action dimension (released edit_target_entropy = -0.5 dim A).
    config.edit_entropy_target = -0.5
    return config


def validate(config):
    require_positive(config, 'flow_steps')
    if not 0.0 <= config.sigma_a <= 2.0:
        raise ValueError(f'sigma_a (FEdit edit radius) must be in [0, 2], got {config.sigma_a} (0 = the BC flow acts).')
    if not math.isfinite(config.edit_entropy_target):
        raise ValueError(f'edit_entropy_target must be finite, got {config.edit_entropy_target}.')


def networks(config, obs_dim, action_dim):
    return {
        **critic_networks(config, obs_dim, action_dim),
        'bc_flow': flow_field(config, obs_dim, action_dim),
        'edit': (EditPolicy(config.actor_hidden_dims, action_dim), ((obs_dim,), (action_dim,))),
        'edit_log_alpha': (LogScalar(), ()),
    }


def target_networks(config):
    return ('critic',)


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """The BC flow's action from N(0, I), edited; stochastic at every temperature (released sample_actions)."""
    noise_rng, edit_rng = jax.random.split(rng)
    noises = jax.random.normal(noise_rng, (*observations.shape[:-1], learner.action_dim))
    return edit_actions(learner, params, observations, flow_actions(learner, params, observations, noises), edit_rng)[0]


def loss(learner, params, state, batch, rng):
    cfg = learner.config
    obs, actions = batch['observations'], batch['actions']
    next_rng, fm_rng, noise_rng, edit_rng = jax.random.split(rng, 4)

    # Critic: TD onto the pessimistic target with the edited flow's actions at s'.
    next_actions = sample_actions(learner, state.params, batch['next_observations'], next_rng)
    critic_loss, info = critic_td_loss(learner, params, state, batch, next_actions)

    # f_beta: flow matching on the data.
    bc_loss = flow_matching_loss(
        lambda x, t: learner.apply('bc_flow', params, obs, x, t), actions, fm_rng, batch.get('valid')
    )

    # Edit policy: maximize Q of the edited flow action with an entropy bonus; temperature toward the target entropy.
    noises = jax.random.normal(noise_rng, actions.shape, actions.dtype)
    flow_a = jax.lax.stop_gradient(flow_actions(learner, state.params, obs, noises))
    edited, log_prob = edit_actions(learner, params, obs, flow_a, edit_rng)
    q = learner.apply('critic', state.params, obs, edited).mean(axis=0)
    alpha = jnp.exp(learner.apply('edit_log_alpha', state.params))
    entropy_loss = jnp.mean(alpha * log_prob)
    entropy = -jax.lax.stop_gradient(log_prob).mean()
    alpha_loss = jnp.exp(learner.apply('edit_log_alpha', params)) * (
        entropy - cfg.edit_entropy_target * learner.action_dim
    )
    edit_loss = -q.mean() + entropy_loss

    info.update(
        {
            'actor/bc_flow_loss': bc_loss,
            'actor/edit_q_loss': -q.mean(),
            'actor/edit_entropy_loss': entropy_loss,
            'actor/edit_alpha_loss': alpha_loss,
            'actor/edit_entropy': entropy,
            'actor/edit_alpha': alpha,
            'actor/edit_shift': jnp.abs(edited - flow_a).mean(),
        }
    )
    return critic_loss + bc_loss + edit_loss + alpha_loss, info


def qam_preset(env_name):
    """FEdit as QAM Table 1 ran it: QAM's protocol (configs.presets.qam_protocol) and experiments/reproduce.py's
    edit_scale per domain (equal to QAM Table 4's fedit_sigma_a in all ten domains)."""
    return {**qam_protocol(env_name), **qam_reproduce('fedit', env_name, {'sigma_a': 'edit_scale'})}


PAPER = 'qam'
PRESETS = {'qam': qam_preset}
