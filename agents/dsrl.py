"""DSRL, diffusion steering via RL in the noise space (Wagenmaker et al. 2025), as the released QAM code runs it for QAM
Table 1 (github.com/ColinQiyangLi/qam @ f93efd2, agents/dsrl.py): the noise-aliasing form, whose noise-space critic is
distilled from the action critic.

Networks: a behavior flow f_beta(s, a, t), trained by flow matching, that acts through its Polyak target
(`use_target_latent`); the action critic Q(s, a) (K heads, TD target mean - rho * std); a noise critic Q_z(s, z) of the
same architecture; a noise policy pi_z(s) (the released TanhNormal: a GELU MLP with its last hidden layer activated,
a mean and a state-dependent log-std layer, log std clipped to [-20, 2], the sample tanh-squashed); a SAC
temperature alpha = exp(log_alpha) (initialised at 1). With sigma_z = `noise_scale`:

    a(s, z) = clip(ODE(f_beta_target, z), -1, 1)          the steered flow (flow_steps Euler steps)
    z = sigma_z tanh(x), x ~ N(mu(s), diag(std(s)^2))     the noise policy
    critic:  mean_{k,batch} valid (Q_k(s, a_data) - y)^2,
             y = r + gamma^h m agg_k Qtarget_k(s', a(s', z')), z' ~ pi_z(s')
    distill: mean_{k,batch} (Q_z,k(s, e) - Q_k(s, a(s, e)))^2,  e ~ N(0, I) (not scaled by sigma_z; not masked)
    actor:   mean_batch [alpha log pi(tanh x | s) - mean_k Q_z,k(s, sigma_z tanh x)]  (reparameterized x; the
             log-density of the squashed sample before the sigma_z scaling, as the released TanhNormal.log_prob)
    alpha:   log-parameterized alpha * (H - entropy_target * dim A),  H = -mean stopgrad(log pi)
    flow:    flow matching (FQL Eq. (1)), masked by `valid`
Q_z and Q in the distillation target, Q_z and alpha in the actor loss are the current networks without gradient; one
Adam over all networks without gradient clipping (the released create()), Polyak targets of the critic and f_beta.
Acting (evaluation, online data, TD targets): z ~ pi_z(s), stochastic at every temperature (the released
sample_actions takes no temperature), then the flow.

As released, acting (evaluation, online exploration) integrates f_beta's Polyak target too when use_target_latent
(acting_params; released sample_flow_actions selects target_actor_bc_flow). Deviation from the released code: the
released best_of_n (default 1, never set by reproduce.py) is not implemented, as in tiltbench's QAM.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.common.networks import MLP, default_init, flow_field, flow_matching_loss
from agents.common.rl import critic_networks, critic_td_loss, require_positive
from agents.fql import flow_actions
from agents.qam import LogScalar, tanh_gaussian
from configs.common import base_config
from configs.presets import fav_table6, qam_protocol, qam_reproduce, qam_rho, with_discount


def get_config():
    config = base_config('dsrl')
    # Critic (the released get_config: num_qs=10, rho=0.5; its critic target is always mean - rho * std).
    config.num_critics = 10  # Heads K of the action critic and of the noise critic.
    config.q_agg = 'pessimistic'  # TD target aggregation mean - rho * std (hard-coded in the released critic_loss).
    config.rho = 0.5  # Pessimism rho (QAM protocol: 0 on humanoidmaze, via the preset).
    config.flow_steps = 10  # Euler steps of the BC flow from the noise to the action.
    # sigma_z: the noise policy's tanh output is scaled by it (released noise_scale, default 1; FAV Table 6
    # dsrl_sigma_z; per-domain values with --preset=qam / fav).
    config.noise_scale = 1.0
    # SAC target entropy per action dimension: the temperature keeps -E log pi at entropy_target * dim A (released
    # target_entropy = -target_entropy_multiplier * dim A, multiplier 0.5).
    config.entropy_target = -0.5
    # True (released): the TD targets, the noise-critic distillation and acting integrate f_beta's Polyak target;
    # False: the online f_beta.
    config.use_target_latent = True
    return config


def validate(config):
    require_positive(config, 'noise_scale', 'flow_steps')
    if not math.isfinite(config.entropy_target):
        raise ValueError(
            f'entropy_target (SAC target entropy per action dimension) must be finite, got {config.entropy_target}.'
        )


class NoisePolicy(nn.Module):
    """The released TanhNormal on MLP(s) (GELU, last hidden layer activated, no LayerNorm): (means, log stds) of the
    pre-tanh Gaussian, log std state-dependent and clipped to [-20, 2]."""

    hidden_dims: tuple
    action_dim: int

    @nn.compact
    def __call__(self, observations):
        x = MLP(self.hidden_dims, activate_final=True)(observations)
        means = nn.Dense(self.action_dim, kernel_init=default_init)(x)
        log_stds = nn.Dense(self.action_dim, kernel_init=default_init)(x)
        return means, jnp.clip(log_stds, -20.0, 2.0)


def networks(config, obs_dim, action_dim):
    critic = critic_networks(config, obs_dim, action_dim)['critic']
    return {
        'critic': critic,  # Q(s, a)
        'z_critic': critic,  # Q_z(s, z): the same architecture on the noise (separate parameters)
        'bc_flow': flow_field(config, obs_dim, action_dim),
        'noise_policy': (NoisePolicy(config.actor_hidden_dims, action_dim), ((obs_dim,),)),
        'log_alpha': (LogScalar(), ()),
    }


def target_networks(config):
    return ('critic', 'bc_flow') if config.use_target_latent else ('critic',)


def noise_actions(learner, params, observations, rng):
    """z = sigma_z tanh(x), x ~ N(mu(s), std(s)^2), and log pi(tanh x | s) (before the sigma_z scaling)."""
    means, log_stds = learner.apply('noise_policy', params, observations)
    squashed, log_prob = tanh_gaussian(means, log_stds, rng)
    return learner.config.noise_scale * squashed, log_prob


def steered_actions(learner, params, flow_params, observations, rng):
    """Actions of the flow (parameters `flow_params`) from the noise policy's z (parameters `params`)."""
    z, _ = noise_actions(learner, params, observations, rng)
    return flow_actions(learner, flow_params, observations, z)


def acting_params(config, params, target_params):
    """Act through f_beta's Polyak target when use_target_latent (released sample_flow_actions)."""
    return {**params, 'bc_flow': target_params['bc_flow']} if config.use_target_latent else params


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """z ~ pi_z(s) through f_beta of `params` (the runner passes acting_params: its Polyak target); stochastic at
    every temperature (released sample_actions)."""
    return steered_actions(learner, params, params, observations, rng)


def loss(learner, params, state, batch, rng):
    cfg = learner.config
    obs, actions = batch['observations'], batch['actions']
    next_rng, distill_rng, fm_rng, pi_rng = jax.random.split(rng, 4)
    flow_params = state.target_params if cfg.use_target_latent else state.params

    # Action critic: TD onto the pessimistic target with actions of the steered flow at s'.
    next_actions = steered_actions(learner, state.params, flow_params, batch['next_observations'], next_rng)
    critic_loss, info = critic_td_loss(learner, params, state, batch, next_actions)

    # Noise critic: each head regresses onto the action critic's head at the flow's action of e ~ N(0, I).
    e = jax.random.normal(distill_rng, actions.shape, actions.dtype)
    e_actions = jax.lax.stop_gradient(flow_actions(learner, flow_params, obs, e))
    target_qs = learner.apply('critic', state.params, obs, e_actions)
    distill_loss = jnp.mean((learner.apply('z_critic', params, obs, e) - target_qs) ** 2)

    # f_beta: flow matching on the data.
    bc_loss = flow_matching_loss(
        lambda x, t: learner.apply('bc_flow', params, obs, x, t), actions, fm_rng, batch.get('valid')
    )

    # Noise policy: SAC in the noise space against Q_z; the temperature tuned toward the target entropy.
    z, log_prob = noise_actions(learner, params, obs, pi_rng)
    q = learner.apply('z_critic', state.params, obs, z).mean(axis=0)
    alpha = jnp.exp(learner.apply('log_alpha', state.params))
    actor_loss = jnp.mean(alpha * log_prob - q)
    entropy = -jax.lax.stop_gradient(log_prob).mean()
    alpha_loss = jnp.exp(learner.apply('log_alpha', params)) * (entropy - cfg.entropy_target * learner.action_dim)

    info.update(
        {
            'critic/distill_loss': distill_loss,
            'actor/bc_flow_loss': bc_loss,
            'actor/loss': actor_loss,
            'actor/alpha_loss': alpha_loss,
            'actor/alpha': alpha,
            'actor/entropy': entropy,
            'actor/q': q.mean(),
            'actor/noise_abs': jnp.abs(z).mean(),
        }
    )
    return critic_loss + distill_loss + bc_loss + actor_loss + alpha_loss, info


# ---- presets ---------------------------------------------------------------------------------------------------------
def qam_preset(env_name):
    """DSRL as QAM Table 1 ran it: QAM's protocol (configs.presets.qam_protocol) and experiments/reproduce.py's
    noise_scale per domain (equal to QAM Table 4's dsrl_sigma_z in all ten domains)."""
    return {**qam_protocol(env_name), **qam_reproduce('dsrl', env_name, {'noise_scale': 'noise_scale'})}


def fav_preset(env_name):
    """FAV Table 6's sigma_z and the FAV paper's discount. FAV reran DSRL on the QAM code base (Appendix A.2) with its
    10-head ensemble and chunking replaced by a 2-head critic without chunking; the rest (mean - rho * std, QAM's rho
    of 0 on humanoidmaze) as QAM runs it. FAV took its OGBench DSRL numbers from the DSRL paper (Wagenmaker et al.),
    whose own code ran them: on OGBench tasks this preset runs the QAM code's DSRL with that paper's sigma_z."""
    values = fav_table6(env_name, {'noise_scale': 'dsrl_sigma_z'})
    return with_discount(env_name, {**values, 'num_critics': 2, 'rho': qam_rho(env_name)})


# The QAM code is this implementation and QAM Table 1 ran it with reproduce.py's values; of FAV's DSRL numbers only the
# D4RL antmaze rows ran this code (2 heads), the OGBench ones come from the DSRL paper's own code.
PAPER = 'qam'
PRESETS = {'qam': qam_preset, 'fav': fav_preset}
