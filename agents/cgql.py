"""Classifier-guidance Q-learning (CGQL; QAM paper App. D, Eqs. (58)-(72)), the QAM paper's baseline in its three
modes: 'simple' (QAM Table 1 row CGQL), 'mse' (CGQL-MSE) and 'linex' (CGQL-Linear), as the released code runs them
(github.com/ColinQiyangLi/qam @ f93efd2, agents/cgql.py; registry names 'cgql', 'cgql_mse', 'cgql_linex').

Networks: a behavior flow v_beta(s, a, u) trained by flow matching (`actor`, Polyak target kept as the released
`target_actor`), and a time-conditioned critic ensemble Q_k(s, a, u) (K = num_critics heads on [s; a; u], the released
ActorVectorField critic); u = 1 is the noise-free critic.

Acting (released sample_actions / compute_flow_actions): a ~ N(0, I), T = flow_steps Euler steps at u_i = i / T,
    a <- a + v(s, a, u_i) / T,   v = v_beta + guidance_coef * (inv_temp (1 - u) grad_a Qbar(s, a, u') + a) / u
(Eqs. (60)-(61), (72)): Qbar = mean over heads of the current critic, u' = 1 in 'simple' mode (the noise-free critic
at the noisy action, Eq. (60)) and u' = u in 'mse' / 'linex' (Eq. (72)); no guidance at step 0 (u = 0) nor at
inv_temp = 0; the intermediate actions are not clipped, the result is clipped to [-1, 1]. best_of_n > 1 draws n
such actions and keeps the one of largest Qbar(s, a, 1).

Critic (Eq. (62) / (71)): TD regression of every head at u = 1 onto r + gamma^h mask agg_k Qtarget_k(s', a', 1),
a' from the acting rule above with v_beta from its Polyak target (`target_guidance`), agg = mean - rho std (QAM's
K = 10, rho = 0.5). In 'mse' / 'linex' mode the same network is also regressed at noisy actions a^u = (1 - u) z + u a,
u ~ U[0, 1], z ~ N(0, I), head k onto the target head Qtarget_k(s, a, 1), weighted by noisy_coef:
    mse:   (Q_k(s, a^u, u) - Qtarget_k(s, a, 1))^2                                                    (Eq. (71))
    linex: d = inv_temp (Qtarget_k(s, a, 1) - Q_k(s, a^u, u));  d if d > isd_clip,
           else exp(d) + inv_temp Q_k(s, a^u, u)                                          (Eqs. (64), (70), released)
Eq. (70) of the paper prints the two cases the other way round (the exponential for d > 5), which would keep exactly
the exponential it is there to cut off; the released code's reading is used. Actor: flow matching alone (Eq. (17)).
One Adam over both networks, no gradient clipping (QAM Table 3), Polyak targets of the critic and the flow.

As released, acting (evaluation, online exploration) also integrates the Polyak-target flow when target_guidance=True
(acting_params), guided by the current critic. `separate=True` of the released config (a separate
time-free critic, never used by reproduce.py; its d_critic is never trained) is not implemented.
"""

import math

import jax
import jax.numpy as jnp

from agents.common.networks import flow_field, flow_matching_loss
from agents.common.rl import apply_valid, critic_networks, critic_td_loss
from configs.common import base_config
from configs.presets import qam_protocol, qam_reproduce

MODES = ('simple', 'mse', 'linex')
VARIANTS = {None: 'simple', 'mse': 'mse', 'linex': 'linex'}  # registry variant -> mode


def registry_name(mode: str) -> str:
    return 'cgql' if mode == 'simple' else f'cgql_{mode}'


def get_config(variant=None):
    if variant not in VARIANTS:
        raise ValueError(
            f"Unknown CGQL variant {variant!r}; valid: None (CGQL), 'mse' (CGQL-MSE), 'linex' (CGQL-Linex)."
        )
    mode = VARIANTS[variant]
    config = base_config(registry_name(mode))
    config.num_critics = 10  # Critic heads K (released num_qs=10; the released code needs K > 1).
    config.q_agg = 'pessimistic'  # TD target mean - rho * std over heads (the released critic_loss, QAM Eq. (26)).
    config.rho = 0.5  # Pessimism rho (released default; 0 on humanoidmaze with --preset=qam).
    config.flow_steps = 10  # T: Euler steps of the guided flow.
    config.best_of_n = 1  # Guided samples per state; the one of largest mean_k Q_k(s, a, 1) is kept (released).
    # 'simple' (CGQL): the critic is trained at u = 1 only and guides with grad_a Q(s, a^u, 1) (Eq. (60)).
    # 'mse' (CGQL-MSE) / 'linex' (CGQL-Linear): the critic is also regressed at noisy actions (MSE, or the clipped
    # Linex loss) and guides with grad_a Q(s, a^u, u) (Eq. (72)). Set by the registry name (cgql, cgql_mse, cgql_linex).
    config.mode = mode
    config.inv_temp = 1.0  # Inverse temperature tau of exp(tau Q) (released default; 10 in every QAM domain).
    config.guidance_coef = 0.1  # Guidance strength vartheta (Eq. (61)); released default, per domain with --preset.
    config.noisy_coef = 0.001  # Weight varrho of the noisy-action critic regression (Eq. (71); mse / linex only).
    config.isd_clip = 5.0  # Linex mode: d = inv_temp * (Qtarget - Q) above this is penalized linearly, not exp(d).
    # The TD target's next actions and the acting policy integrate the Polyak-target flow (released
    # target_guidance=True); False: the current flow.
    config.target_guidance = True
    return config


def validate(config):
    if config.mode not in MODES:
        raise ValueError(f'mode must be one of {", ".join(map(repr, MODES))}, got {config.mode!r}.')
    for key in ('flow_steps', 'best_of_n'):
        if not (isinstance(config[key], int) and config[key] >= 1):
            raise ValueError(f'{key} must be an integer >= 1, got {config[key]!r}.')
    for key in ('inv_temp', 'guidance_coef', 'noisy_coef'):
        if not 0.0 <= config[key] < math.inf:
            raise ValueError(f'{key} must be finite and >= 0, got {config[key]} (inv_temp = 0 turns guidance off).')
    if not config.isd_clip > 0:
        raise ValueError(f'isd_clip (Linex clip of inv_temp * (Qtarget - Q)) must be positive, got {config.isd_clip}.')


def networks(config, obs_dim, action_dim):
    return {
        # Q_k(s, a, u): the shared critic ensemble with the time u appended to the action ([s; a; u], as released).
        **critic_networks(config, obs_dim, action_dim + 1),
        'actor': flow_field(config, obs_dim, action_dim),
    }


def target_networks(config):
    return ('critic', 'actor') if config.target_guidance else ('critic',)


def critic_q(learner, params, observations, actions, times):
    """Q_k(s, a, u) of every head, shape (K, *batch); `times` (*batch, 1)."""
    return learner.apply('critic', params, observations, jnp.concatenate([actions, times], -1))


def guided_flow(learner, actor_params, critic_params, observations, noises):
    """The guided Euler integration (released compute_flow_actions): v_beta from `actor_params`, the guidance
    gradient from the critic of `critic_params`; clipped to [-1, 1] at the end."""
    cfg = learner.config
    steps = cfg.flow_steps

    def velocity(a, t):
        return learner.apply('actor', actor_params, observations, a, t)

    def q_sum(a, u):
        return critic_q(learner, critic_params, observations, a, u).mean(axis=0).sum()

    def step(i, a):
        t = jnp.full((*a.shape[:-1], 1), i / steps, a.dtype)
        v = velocity(a, t)
        if cfg.inv_temp > 0:  # released: guidance only at inv_temp > 0 and i > 0 (u = 0 would divide by zero)
            score = jax.grad(q_sum)(a, jnp.ones_like(t) if cfg.mode == 'simple' else t)
            v = v + cfg.guidance_coef * (cfg.inv_temp * (1 - t) * score + a) / t
        return a + v / steps

    a = noises + velocity(noises, jnp.zeros((*noises.shape[:-1], 1), noises.dtype)) / steps  # step 0, u = 0
    return jnp.clip(jax.lax.fori_loop(1, steps, step, a), -1.0, 1.0)


def policy_actions(learner, actor_params, critic_params, observations, rng):
    """Guided actions (released sample_actions): best_of_n guided samples, the one of largest mean_k Q_k(s, a, 1)."""
    n, dim = learner.config.best_of_n, learner.action_dim
    if n == 1:
        noises = jax.random.normal(rng, (*observations.shape[:-1], dim))
        return guided_flow(learner, actor_params, critic_params, observations, noises)
    noises = jax.random.normal(rng, (*observations.shape[:-1], n, dim))
    obs = jnp.repeat(observations[..., None, :], n, axis=-2)
    actions = guided_flow(learner, actor_params, critic_params, obs, noises)  # (*batch, n, dim)
    q = critic_q(learner, critic_params, obs, actions, jnp.ones_like(actions[..., :1])).mean(axis=0)
    best = jnp.argmax(q, axis=-1)
    return jnp.take_along_axis(actions, best[..., None, None], axis=-2)[..., 0, :]


def acting_params(config, params, target_params):
    """Act with the Polyak-target flow when target_guidance (released compute_flow_actions), the current critic."""
    return {**params, 'actor': target_params['actor']} if config.target_guidance else params


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """The acting policy (stochastic at every temperature, as released): the guided flow of `params` (the runner
    passes acting_params)."""
    return policy_actions(learner, params, params, observations, rng)


def noisy_critic_loss(cfg, q_noisy, q_target, valid):
    """The noisy-action regression of 'mse' / 'linex' mode, heads (K, B) onto target heads (K, B). Returns the loss and
    the soft-value gap (1/tau)(log mean exp(tau Q(s, a^u, u)) - log mean exp(tau Qtarget(s, a, 1))), the log-domain
    form of the released `exp_bias` (mean exp(tau Q) - mean exp(tau Qtarget), same sign), which overflows float32
    beyond tau Q = 88 (and a non-finite metric stops a tiltbench run)."""
    if cfg.mode == 'mse':
        return jnp.mean(apply_valid((q_noisy - q_target) ** 2, valid, axis=1)), None
    tau = cfg.inv_temp
    d = tau * (q_target - q_noisy)
    per = jnp.where(d > cfg.isd_clip, d, jnp.exp(jnp.minimum(d, cfg.isd_clip)) + tau * q_noisy)
    log_mean_exp = lambda x: jax.nn.logsumexp(x) - jnp.log(x.size)  # noqa: E731
    gap = (log_mean_exp(tau * q_noisy) - log_mean_exp(tau * q_target)) / max(tau, 1e-12)
    return jnp.mean(apply_valid(per, valid, axis=1)), gap


def loss(learner, params, state, batch, rng):
    cfg = learner.config
    obs, actions, valid = batch['observations'], batch['actions'], batch.get('valid')
    next_rng, fm_rng, u_rng, z_rng = jax.random.split(rng, 4)
    ones = jnp.ones_like(actions[..., :1])

    # TD at u = 1 with the guided policy's next actions (Eq. (62)); the critic sees [a; 1].
    flow_params = state.target_params if cfg.target_guidance else state.params
    next_actions = policy_actions(learner, flow_params, state.params, batch['next_observations'], next_rng)
    td_batch = {**batch, 'actions': jnp.concatenate([actions, ones], -1)}
    critic_loss, info = critic_td_loss(
        learner, params, state, td_batch, jnp.concatenate([next_actions, jnp.ones_like(next_actions[..., :1])], -1)
    )
    total = critic_loss

    if cfg.mode != 'simple':  # Eq. (71): Q(s, a^u, u) regressed onto Qtarget(s, a, 1), head by head
        u = jax.random.uniform(u_rng, ones.shape, actions.dtype)
        z = jax.random.normal(z_rng, actions.shape, actions.dtype)
        q_noisy = critic_q(learner, params, obs, (1 - u) * z + u * actions, u)
        q_target = critic_q(learner, state.target_params, obs, actions, ones)
        noisy_loss, gap = noisy_critic_loss(cfg, q_noisy, q_target, valid)
        total = total + cfg.noisy_coef * noisy_loss
        info['critic/noisy_loss'] = noisy_loss
        info['critic/noisy_q_mean'] = q_noisy.mean()
        if gap is not None:
            info['critic/soft_gap'] = gap

    flow_loss = flow_matching_loss(lambda x, t: learner.apply('actor', params, obs, x, t), actions, fm_rng, valid)
    info['actor/flow_loss'] = flow_loss
    return total + flow_loss, info


def qam_preset(env_name, variant=None):
    """The released QAM experiments/reproduce.py values of CGQL / CGQL_MSE / CGQL_LINEX for the domain of `env_name`
    (mode, inv_temp, guidance_coef, and noisy_coef in mse / linex mode) under QAM Table 1's protocol
    (configs.presets.qam_protocol: K = 10 critics, mean - rho std, rho 0 on humanoidmaze, chunks of 5 on
    manipulation, the paper discount, sparse scene / puzzle). QAM Table 4 agrees in every domain, read as
    (tau, varrho, vartheta): its header prints (vartheta, tau) / (vartheta, varrho, tau), but tau = 10 everywhere
    is the only entry of tau's sweep range {0.1, 1, 10} outside vartheta's {0.01, 0.1, 1} (Table 5)."""
    mode = VARIANTS[variant]
    keys = {'mode': 'mode', 'inv_temp': 'inv_temp', 'guidance_coef': 'guidance_coef'}
    if mode != 'simple':
        keys['noisy_coef'] = 'noisy_coef'
    return {**qam_protocol(env_name), **qam_reproduce(registry_name(mode), env_name, keys)}


PAPER = 'qam'  # QAM Table 1's CGQL rows (experiments/reproduce.py)
PRESETS = {'qam': qam_preset}
