"""Q-learning with Adjoint Matching (Li & Levine 2026), with its QAM-FQL and QAM-EDIT variants and the BAM ablation.

A behavior flow f_beta(s, a, u) is trained by flow matching (Eq. (17)); a residual flow f_theta(s, a, u) is trained
by adjoint matching (Algorithm 1): sample a trajectory of the memoryless SDE (Eq. (24)) with f_beta + f_theta, set
the boundary adjoint g^1 = -inv_temp * grad_a Q(s, a^1), step the lean adjoint (Eq. (25)) backward with VJPs
through 2 f_beta - a/u only, and regress 2 f_theta / sigma_u onto -sigma_u g^u (Eq. (21)). The policy integrates
f_beta + f_theta with `flow_steps` Euler steps from N(0, I), clipped to [-1, 1]; at the optimum it samples
pi_beta(a|s) exp(inv_temp * Q(s, a)) (Proposition 1). The critic is the shared ensemble with the target
mean - rho * std (Eq. (26)) on actions of the acting policy.

Variants (registry names): 'qam'; 'qam_fql' (Eq. (29): a one-step policy distilled toward the QAM flow with
-Q + alpha ||.||^2, used for acting and targets; agents/qam_fql.py); 'qam_edit' (Eq. (30): a tanh-Gaussian edit of
the QAM flow action within an L_inf ball of radius sigma_a, SAC entropy tuning; agents/qam_edit.py); 'qam_fav' (plain
QAM as reproduced in the FAV paper: a 2-head critic and FAV Table 6 inverse temperatures; agents/qam_fav.py).
`bam=True` is the BAM ablation: the basic adjoint (Eq. (10)-(12)) through f_beta + f_theta and the running cost.

Time discretization and the u = 0 singularity (the math is here, once): the memoryless SDE
da = (2 f - a/u) du + sigma_u dB with sigma_u^2 = 2 (1 - u)/u has an infinite drift and noise at u = 0. On each step
[u_i, u_i + h] we integrate the singular linear part and the noise exactly and freeze the network field f at the
left end (Euler for the learned part, as in Eq. (24)): the integrating factor u gives d(u a) = 2 u f du +
sqrt(2 u (1 - u)) dB, whose coefficients are bounded, so
    a_{i+1} = decay_i a_i + drift_i f(a_i, u_i) + noise_i z_i,   decay_i = u_i/u_{i+1},
    drift_i = (u_{i+1}^2 - u_i^2)/u_{i+1},   noise_i^2 = int_{u_i}^{u_{i+1}} 2s(1-s) ds / u_{i+1}^2.
These are finite for every step (the infinite contraction at u = 0 is integrated exactly: decay_0 = 0) and reduce to
Eq. (24) as h -> 0 (decay = 1 - h/(u + h): the '1/u evaluated at u + h' rule; drift -> 2h; noise^2 -> h sigma_u^2).
The last step is a plain ODE Euler step a_T = a_{T-1} + h f with the policy's field (the QAM code also ends with an
ODE step, 'following the adjoint-matching paper', but with f_beta alone), so a^1 carries no unremoved O(h) noise.
The lean adjoint is the exact VJP chain of these discrete steps with f_theta's Jacobian dropped (Eq. (25) with the
same coefficients). The loss (Eq. (21)) is the first-order optimality condition of the discretized control problem
sum_i KL_i - inv_temp Q(a_T): the control f_theta(a_i, u_i) of step i moves a_{i+1}, so it is matched to g_{i+1}
with the step's own noise-to-drift ratio:
    sum_i || 2 f_theta(a_i, u_i)/sigma_i + sigma_i g~_i ||^2,  sigma_i = 2 sqrt(h) noise_i/drift_i,
    g~_i = drift_i/(2h) g_{i+1}
(sigma_i -> sigma_u and g~_i -> g^u as h -> 0; sigma_0 = 2 sqrt((1 - 2h/3)/h) is finite, and the u = 0 target
-sigma_0^2 g~_0/2 ~ -lim g^u/u is O(1) as in continuous time). The last step's loss term uses the SDE coefficients
of [1 - h, 1] (the objective is the integral over the whole schedule; only the final sampling step drops its noise).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from agents.common.networks import MLP, VectorField, default_init, euler_flow, flow_matching_loss, gaussian_log_prob
from agents.common.rl import critic_networks, critic_td_loss
from configs.common import base_config
from configs.presets import qam_rho, qam_table4, with_discount


def get_config(variant: str = 'qam'):
    names = {'qam': 'qam', 'fql': 'qam_fql', 'edit': 'qam_edit', 'fav': 'qam_fav'}
    if variant not in names:
        raise ValueError(f'Unknown QAM variant {variant!r}; valid: {", ".join(names)}.')
    config = base_config(names[variant])
    # Critic (QAM Table 3): K = 10 heads, pessimistic target mean - rho * std (rho = 0 for humanoidmaze via preset).
    # 'qam_fav' keeps the FAV paper's 2-head critic (the QAM code base with only the heads changed).
    config.num_critics = 2 if variant == 'fav' else 10  # Critic heads K.
    config.q_agg = 'pessimistic'  # Target aggregation mean - rho * std (Eq. (26)).
    config.rho = 0.5  # Pessimism rho (Table 3: 0.5; humanoidmaze 0 in the preset).
    # QAM text (Sec. 4): parameter gradients clipped element-wise at 1. The released code clips the global norm at 1
    # instead (`--agent.grad_clip_value=0 --agent.grad_clip_norm=1`).
    config.grad_clip_value = 1.0
    # Inverse temperature tau of pi_beta exp(tau Q) (not the target rate `tau`). Default: the most common value of
    # the paper's table for the variant (QAM Table 4 / FAV Table 6); per-domain values with `--preset=paper`.
    config.inv_temp = {'qam': 3.0, 'fql': 1.0, 'edit': 1.0, 'fav': 3.0}[variant]
    config.flow_steps = 10  # T: Euler steps of the policy flow and of the memoryless SDE (QAM Table 3).
    config.bam = False  # BAM ablation: basic adjoint through f_beta + f_theta and the running cost (Eq. (12)).
    config.bc_flow_target = True  # f_beta in the SDE / adjoint / loss from its Polyak target (QAM code; paper silent).
    config.target_critic_grad = True  # grad_a Q for g^1 from the target critic (QAM code; paper: Q_phi).
    if variant == 'fql':
        # QAM-FQL BC coefficient alpha (Eq. (29)); inf = plain QAM (Table 5), acting with the flow. Table 4 mode: 30.
        config.alpha = 30.0
    if variant == 'edit':
        config.sigma_a = 0.1  # QAM-EDIT L_inf edit radius (Eq. (30)); 0 = plain QAM (Table 5). Table 4 mode: 0.1.
        config.edit_entropy_target = -0.5  # Edit-policy target entropy per action dimension (QAM code: -0.5 A).
    return config


def paper_preset(env_name):
    """QAM Tables 3-4 for the domain of `env_name` (see configs/presets.py)."""
    return with_discount(env_name, {**qam_table4(env_name, {'inv_temp': 'qam_tau'}), 'rho': qam_rho(env_name)})


def uses_onestep(config) -> bool:
    return 'alpha' in config and math.isfinite(config.alpha)


def uses_edit(config) -> bool:
    return 'sigma_a' in config and config.sigma_a > 0


def validate(config):
    if not (0.0 <= config.inv_temp < math.inf):
        raise ValueError(f'inv_temp (QAM inverse temperature) must be finite and >= 0, got {config.inv_temp}.')
    if config.flow_steps < 1:
        raise ValueError(f'flow_steps must be >= 1, got {config.flow_steps}.')
    if 'alpha' in config and not config.alpha > 0:
        raise ValueError(
            f'alpha (QAM-FQL BC coefficient) must be in (0, inf], got {config.alpha}; the QAM paper '
            'writes alpha = 0 / inf for plain QAM, which is alpha = inf here.'
        )
    if 'sigma_a' in config and not 0.0 <= config.sigma_a <= 2.0:
        raise ValueError(f'sigma_a (QAM-EDIT edit radius) must be in [0, 2], got {config.sigma_a} (0 = plain QAM).')
    if 'edit_entropy_target' in config and not math.isfinite(config.edit_entropy_target):
        raise ValueError(f'edit_entropy_target must be finite, got {config.edit_entropy_target}.')


class EditPolicy(nn.Module):
    """Gaussian edit policy pi(. | s, a~) (tanh-squashed by the caller), state-dependent std (FEdit / EXPO)."""

    hidden_dims: tuple
    action_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, observations, actions):
        x = MLP(self.hidden_dims, activate_final=True, layer_norm=self.layer_norm)(
            jnp.concatenate([observations, actions], -1)
        )
        means = nn.Dense(self.action_dim, kernel_init=default_init)(x)
        log_stds = nn.Dense(self.action_dim, kernel_init=default_init)(x)
        return means, jnp.clip(log_stds, -5.0, 2.0)


class LogScalar(nn.Module):
    """A trainable scalar log(alpha_ent) (SAC entropy coefficient, initialised at alpha_ent = 1)."""

    @nn.compact
    def __call__(self):
        return self.param('log_value', nn.initializers.zeros, ())


def networks(config, obs_dim, action_dim):
    def field():
        return VectorField(config.actor_hidden_dims, action_dim, config.actor_layer_norm)

    nets = {
        **critic_networks(config, obs_dim, action_dim),
        'bc_flow': (field(), ((obs_dim,), (action_dim,), (1,))),  # f_beta
        'residual': (field(), ((obs_dim,), (action_dim,), (1,))),  # f_theta
    }
    if uses_onestep(config):
        nets['onestep'] = (field(), ((obs_dim,), (action_dim,)))
    if uses_edit(config):
        edit = EditPolicy(config.actor_hidden_dims, action_dim, config.actor_layer_norm)
        nets['edit'] = (edit, ((obs_dim,), (action_dim,)))
        nets['edit_log_alpha'] = (LogScalar(), ())
    return nets


def target_networks(config):
    return ('critic', 'bc_flow') if config.bc_flow_target else ('critic',)


# ---- the memoryless SDE, the adjoints and the adjoint-matching loss (pure functions, tested in float64) -------------
def sde_coefficients(flow_steps: int) -> dict:
    """Per-step coefficients (float64 numpy, shape (T,)) of the discretized memoryless SDE; see the module docstring.
    Sampling step i: a_{i+1} = decay_i a_i + drift_i f(a_i, u_i) + noise_i z_i, the last step being the ODE step
    (decay, drift, noise) = (1, h, 0). Loss / running-cost coefficients (sigma, adj_weight, cost) come from the SDE
    integrated over every interval, the last included."""
    h = 1.0 / flow_steps
    u = np.arange(flow_steps, dtype=np.float64) * h
    un = u + h
    decay = u / un
    drift = (un**2 - u**2) / un
    noise = np.sqrt((un**2 - u**2) - 2.0 / 3.0 * (un**3 - u**3)) / un
    coeffs = dict(
        h=h, u=u, sigma=2.0 * np.sqrt(h) * noise / drift, adj_weight=drift / (2.0 * h), cost=drift**2 / (2.0 * noise**2)
    )
    coeffs.update(decay=decay.copy(), drift=drift.copy(), noise=noise.copy())
    coeffs['decay'][-1], coeffs['drift'][-1], coeffs['noise'][-1] = 1.0, h, 0.0  # final plain ODE (Euler) step
    return coeffs


def _arrays(coeffs, keys, dtype, lo=0):
    return tuple(jnp.asarray(coeffs[k][lo:], dtype) for k in keys)


def _time(a, u):
    return jnp.broadcast_to(u, (*a.shape[:-1], 1)).astype(a.dtype)


def memoryless_sde(field_fn, a0, noises, coeffs):
    """Trajectory a_0..a_T (shape (T+1, *a0.shape)) of the memoryless SDE (Eq. (24)) with field f = field_fn(a, u);
    `noises` (T, *a0.shape) standard normal (the last one is unused: the final step is an ODE step)."""

    def body(a, x):
        u, decay, drift, noise, z = x
        a = decay * a + drift * field_fn(a, _time(a, u)) + noise * z
        return a, a

    xs = (*_arrays(coeffs, ('u', 'decay', 'drift', 'noise'), a0.dtype), noises)
    return jnp.concatenate([a0[None], jax.lax.scan(body, a0, xs)[1]])


def _adjoint_scan(step_vjp, traj, g_final, coeffs):
    """g_T = g_final; g_i = step_vjp((a_i, step i's coefficients), g_{i+1}) for i = T-1..1. Returns g_1..g_T."""
    if len(coeffs['u']) == 1:
        return g_final[None]

    def body(g, x):
        g = step_vjp(x, g)
        return g, g

    keys = ('u', 'decay', 'drift', 'cost')
    xs = (traj[1:-1], *_arrays(coeffs, keys, g_final.dtype, lo=1))
    return jnp.concatenate([jax.lax.scan(body, g_final, xs, reverse=True)[1], g_final[None]])


def lean_adjoint(base_fn, traj, g_final, coeffs):
    """Lean adjoint states g_1..g_T (shape (T, ...)), g_T = g_final: the VJP chain of the discrete steps with the base
    field only (Eq. (25)), g_i = decay_i g_{i+1} + drift_i (grad_a f_beta(a_i, u_i))^T g_{i+1}. In Eq. (25) form:
    g_i = g_{i+1} + h VJP(drift_i/h f_beta - (1 - decay_i)/h a) with drift_i/h -> 2 and (1 - decay_i)/h = 1/(u_i + h)
    (the final ODE step: g + h (grad f_beta)^T g)."""

    def step_vjp(x, g):
        a, u, decay, drift, _ = x
        return decay * g + drift * jax.vjp(lambda y: base_fn(y, _time(y, u)), a)[1](g)[0]

    return _adjoint_scan(step_vjp, traj, g_final, coeffs)


def basic_adjoint(base_fn, residual_fn, traj, g_final, coeffs):
    """BAM: the full adjoint g_i = d/da_i [sum_{j >= i} KL_j - inv_temp Q(a_T)] (Eq. (10)-(11)): VJPs through the
    discrete steps with the combined field f_beta + f_theta, plus the gradient of the running cost
    KL_i = cost_i ||f_theta(a_i, u_i)||^2, cost_i = drift_i^2/(2 noise_i^2) = 2h/sigma_i^2 (SDE coefficients)."""

    def step_vjp(x, g):
        a, u, decay, drift, cost = x

        def step(y):
            t = _time(y, u)
            res = residual_fn(y, t)
            return decay * y + drift * (base_fn(y, t) + res), cost * jnp.sum(res**2)

        return jax.vjp(step, a)[1]((g, jnp.ones((), g.dtype)))[0]

    return _adjoint_scan(step_vjp, traj, g_final, coeffs)


def adjoint_matching_loss(f_theta, adjoints, coeffs):
    """Eq. (21), discretized: sum_i || 2 f_theta(a_i, u_i)/sigma_i + sigma_i g~_i ||^2 with g~_i = drift_i/(2h) g_{i+1}.
    f_theta: (T, B, A) residual field on the trajectory; adjoints: (T, B, A) = g_1..g_T. Summed over steps and action
    dimensions, averaged over the batch (QAM code)."""
    sigma = jnp.asarray(coeffs['sigma'], f_theta.dtype)[:, None, None]
    weight = jnp.asarray(coeffs['adj_weight'], f_theta.dtype)[:, None, None]
    return jnp.mean(jnp.sum((2.0 * f_theta / sigma + sigma * weight * adjoints) ** 2, axis=(0, -1)))


# ---- policies ---------------------------------------------------------------------------------------------------
def flow_actions(learner, params, observations, noises):
    """The QAM flow policy: Euler integration of f_beta + f_theta from noise, clipped."""

    def field(x, t):
        return learner.apply('bc_flow', params, observations, x, t) + learner.apply(
            'residual', params, observations, x, t
        )

    return euler_flow(field, noises, learner.config.flow_steps)


def tanh_gaussian(means, log_stds, rng):
    """A sample tanh(x), x ~ N(means, exp(log_stds)^2), and its log-density (tanh change of variables)."""
    x = means + jnp.exp(log_stds) * jax.random.normal(rng, means.shape, means.dtype)
    log_det = jnp.sum(2.0 * (jnp.log(2.0) - x - jax.nn.softplus(-2.0 * x)), axis=-1)  # sum log(1 - tanh(x)^2)
    return jnp.tanh(x), gaussian_log_prob(means, log_stds, x) - log_det


def edit_actions(learner, params, observations, base_actions, rng):
    """QAM-EDIT: clip(a~ + sigma_a * delta), delta ~ tanh-Gaussian pi_omega(. | s, a~). Returns (actions, log pi)."""
    means, log_stds = learner.apply('edit', params, observations, base_actions)
    delta, log_prob = tanh_gaussian(means, log_stds, rng)
    return jnp.clip(base_actions + learner.config.sigma_a * delta, -1.0, 1.0), log_prob


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """The acting policy (also the critic-target policy): the QAM flow, the QAM-FQL one-step policy, or the flow plus
    the QAM-EDIT edit. Stochastic at every temperature (as in the QAM code)."""
    noise_rng, edit_rng = jax.random.split(rng)
    noises = jax.random.normal(noise_rng, (*observations.shape[:-1], learner.action_dim))
    if uses_onestep(learner.config):
        return jnp.clip(learner.apply('onestep', params, observations, noises), -1.0, 1.0)
    actions = flow_actions(learner, params, observations, noises)
    if uses_edit(learner.config):
        actions = edit_actions(learner, params, observations, actions, edit_rng)[0]
    return actions


# ---- losses -----------------------------------------------------------------------------------------------------
def adjoint_matching(learner, params, state, observations, rng):
    """Algorithm 1: SDE trajectory, boundary adjoint, lean (or basic) adjoints, and the matching loss for f_theta."""
    cfg = learner.config
    coeffs = sde_coefficients(cfg.flow_steps)
    base_params = state.target_params if cfg.bc_flow_target else state.params
    critic_params = state.target_params if cfg.target_critic_grad else state.params

    def base(a, u):
        return learner.apply('bc_flow', base_params, observations, a, u)

    def residual(a, u):
        return learner.apply('residual', state.params, observations, a, u)

    a0_rng, z_rng = jax.random.split(rng)
    shape = (*observations.shape[:-1], learner.action_dim)
    a0 = jax.random.normal(a0_rng, shape)
    noises = jax.random.normal(z_rng, (cfg.flow_steps, *shape))
    traj = memoryless_sde(lambda a, u: base(a, u) + residual(a, u), a0, noises, coeffs)

    def q_sum(a):
        return learner.apply('critic', critic_params, observations, jnp.clip(a, -1.0, 1.0)).mean(axis=0).sum()

    g_final = -cfg.inv_temp * jax.grad(q_sum)(traj[-1])  # g^1 = -tau grad_a Q(s, a^1)
    if cfg.bam:
        adjoints = basic_adjoint(base, residual, traj, g_final, coeffs)
    else:
        adjoints = lean_adjoint(base, traj, g_final, coeffs)
    adjoints = jax.lax.stop_gradient(adjoints)
    states = jax.lax.stop_gradient(traj[:-1])
    times = jnp.broadcast_to(jnp.asarray(coeffs['u'], states.dtype)[:, None, None], (*states.shape[:-1], 1))
    obs = jnp.broadcast_to(observations, (cfg.flow_steps, *observations.shape))
    f_theta = learner.apply('residual', params, obs, states, times)
    loss = adjoint_matching_loss(f_theta, adjoints, coeffs)
    info = {
        'actor/am_loss': loss,
        'actor/adj_final_abs': jnp.abs(g_final).mean(),
        'actor/adj_abs': jnp.abs(adjoints).mean(),
        'actor/residual_abs': jnp.abs(f_theta).mean(),
        'actor/sde_action_abs': jnp.abs(traj[-1]).mean(),
    }
    return loss, info


def loss(learner, params, state, batch, rng):
    cfg = learner.config
    obs, actions = batch['observations'], batch['actions']
    next_rng, fm_rng, am_rng, noise_rng, edit_rng = jax.random.split(rng, 5)

    # Critic: TD onto the pessimistic target (Eq. (26)) with actions of the acting policy (Eq. (23)).
    next_actions = sample_actions(learner, state.params, batch['next_observations'], next_rng)
    critic_loss, info = critic_td_loss(learner, params, state, batch, next_actions)

    # f_beta: flow matching on the data (Eq. (17)); f_theta: adjoint matching (Eq. (21)).
    bc_loss = flow_matching_loss(lambda x, t: learner.apply('bc_flow', params, obs, x, t), actions, fm_rng)
    am_loss, am_info = adjoint_matching(learner, params, state, obs, am_rng)
    total = critic_loss + bc_loss + am_loss
    info.update(am_info)
    info['actor/bc_flow_loss'] = bc_loss

    if uses_onestep(cfg) or uses_edit(cfg):
        noises = jax.random.normal(noise_rng, actions.shape)
        flow_a = jax.lax.stop_gradient(flow_actions(learner, state.params, obs, noises))
    if uses_onestep(cfg):
        # QAM-FQL (Eq. (29)): -Q(s, mu(s, z)) + alpha ||mu(s, z) - ODE(f, z)||^2.
        onestep = learner.apply('onestep', params, obs, noises)
        distill_loss = jnp.mean((onestep - flow_a) ** 2)
        q = learner.apply('critic', state.params, obs, jnp.clip(onestep, -1.0, 1.0)).mean(axis=0)
        total = total - q.mean() + cfg.alpha * distill_loss
        info.update({'actor/distill_loss': distill_loss, 'actor/onestep_q': q.mean()})
    if uses_edit(cfg):
        # QAM-EDIT (Eq. (30), FEdit Eq. (77)-(78)): -Q(s, clip(a~ + sigma_a delta)) + alpha_ent log pi(delta), with
        # alpha_ent tuned so that the entropy stays at edit_entropy_target * action_dim.
        edited, log_prob = edit_actions(learner, params, obs, flow_a, edit_rng)
        q = learner.apply('critic', state.params, obs, edited).mean(axis=0)
        ent_coef = jnp.exp(learner.apply('edit_log_alpha', state.params))
        edit_loss = jnp.mean(ent_coef * log_prob - q)
        entropy = -jax.lax.stop_gradient(log_prob).mean()
        alpha_loss = jnp.exp(learner.apply('edit_log_alpha', params)) * (
            entropy - cfg.edit_entropy_target * learner.action_dim
        )
        total = total + edit_loss + alpha_loss
        info.update(
            {
                'actor/edit_q': q.mean(),
                'actor/edit_entropy': entropy,
                'actor/edit_alpha': ent_coef,
                'actor/edit_shift': jnp.abs(edited - flow_a).mean(),
            }
        )
    return total, info
