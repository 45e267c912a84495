"""Q-learning with Adjoint Matching (Li & Levine 2026), with its QAM-FQL and QAM-EDIT variants and the BAM ablation, as
the released code runs them (github.com/ColinQiyangLi/qam @ f93efd2: agents/qam.py, agents/bam.py; the paper's text
where it differs is a switch).

Networks: a behavior flow f_beta(s, a, t), trained by flow matching (Eq. (17)), and a policy flow f_fast(s, a, t) (the
released `actor_fast`). With `residual=False` (the released default and what experiments/reproduce.py runs) f_fast is
the full policy field and the control is u = f_fast - f_beta; with `residual=True` (the paper's Eq. (19)) the policy
field is f_beta + f_fast and u = f_fast. f_beta in the SDE, the adjoint and the loss is its Polyak target
(`bc_flow_target`, released `target_actor`); acting with a residual adds the online f_beta. The acting policy
integrates its field with `flow_steps` Euler steps from N(0, I), clipped to [-1, 1]; at inv_temp = 0 it integrates
f_beta alone (released sample_actions). The critic is the shared ensemble with the target mean - rho * std (Eq. (26))
on actions of the acting policy.

Adjoint matching (Algorithm 1) with T = flow_steps, h = 1/T, t_i = i h (i = 0..T-1). `sde_scheme='released'` (qam.py
adj_matching / actor_loss):
    sigma_i = sqrt(2 (1 - t_i + h)/(t_i + h))
    a_{i+1} = a_i + h (2 f(a_i, t_i) - a_i/(t_i + h)) + sqrt(h) sigma_i z_i     i < T-1, f the policy field (Eq. (24))
    a_T = a_{T-1} + h f_beta(a_{T-1}, t_{T-1})                                  last step: ODE, behavior flow only
    g_T = -inv_temp grad_a mean_k Q_k(s, clip(a_T))                              target critic (`target_critic_grad`)
    g_i = g_{i+1} + h VJP_{a_i}[2 f_beta(., t_i + h) - ./(t_i + h)](g_{i+1})    i = T-1..0 (lean adjoint, Eq. (25))
    L = mean_batch sum_i || 2 u(a_i, t_i)/sigma_i + sigma_i g_i ||^2            (Eq. (21); summed over action dims)
`sde_scheme='exact'` (tiltbench's earlier integrator, kept as a switch): each step integrates the singular linear part
and the noise exactly, the network field frozen at the left end (integrating factor t: d(t a) = 2 t f dt +
sqrt(2 t (1 - t)) dB), so every coefficient is finite at t = 0:
    a_{i+1} = decay_i a_i + drift_i f(a_i, t_i) + noise_i z_i,  decay_i = t_i/t_{i+1},
    drift_i = (t_{i+1}^2 - t_i^2)/t_{i+1},  noise_i^2 = int_{t_i}^{t_{i+1}} 2 s (1 - s) ds / t_{i+1}^2,
the last step a plain Euler ODE step with the policy field. The lean adjoint is the exact VJP chain of these steps with
f_fast's Jacobian dropped, g_i = decay_i g_{i+1} + drift_i (grad_a f_beta(a_i, t_i))^T g_{i+1}, and step i's control,
which moves a_{i+1}, is matched to g_{i+1} with the step's own noise-to-drift ratio (the first-order optimality
condition of the discrete problem sum_i KL_i - inv_temp Q(a_T)):
    L = mean_batch sum_i || 2 u_i/sigma_i + sigma_i g~_i ||^2,
    sigma_i = 2 sqrt(h) noise_i/drift_i,  g~_i = drift_i/(2h) g_{i+1}
(sigma_i -> sigma_t and g~_i -> g(t_i) as h -> 0; the last loss term uses the SDE coefficients of [1 - h, 1]).
In a linear-Gaussian check neither scheme is uniformly closer to the exact tilt (scripts/qam_scheme_check.py).

BAM (`bam=True`). Released scheme, as agents/bam.py: no adjoint; the SDE trajectory is differentiated end to end
    L = -inv_temp mean_batch agg_k Q_k(s, a_T) + mean_batch sum_{i < T-1} 2 ||u(a_i, t_i)||^2 / sigma_i^2
with the current critic, a_T unclipped, agg = `q_agg` (mean - rho std) and no factor h on the running cost (bam.py).
Exact scheme: the basic adjoint (Eq. (10)-(12)), the VJP chain through the policy field plus the running cost
cost_i ||u_i||^2 (cost_i = 2h/sigma_i^2), regressed with the loss above.

Variants (registry names): 'qam'; 'qam_fql' (Eq. (29): a one-step policy distilled toward the QAM flow with
-Q + alpha ||.||^2, used for acting and targets; agents/qam_fql.py); 'qam_edit' (Eq. (30): a tanh-Gaussian edit of
the QAM flow action within an L_inf ball of radius sigma_a, SAC entropy tuning; agents/qam_edit.py); 'qam_fav' (plain
QAM as the FAV paper reran it: the QAM code base with a 2-head critic; agents/qam_fav.py).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from agents.common.networks import MLP, VectorField, default_init, euler_flow, flow_matching_loss, gaussian_log_prob
from agents.common.rl import aggregate_q, critic_networks, critic_td_loss
from configs.common import base_config
from configs.presets import qam_domain, qam_protocol, qam_table4

SDE_SCHEMES = ('released', 'exact')


def get_config(variant: str = 'qam'):
    names = {'qam': 'qam', 'fql': 'qam_fql', 'edit': 'qam_edit', 'fav': 'qam_fav'}
    if variant not in names:
        raise ValueError(f'Unknown QAM variant {variant!r}; valid: {", ".join(names)}.')
    config = base_config(names[variant])
    # Critic (QAM Table 3, released num_qs=10): K = 10 heads, pessimistic target mean - rho * std (rho = 0 for
    # humanoidmaze via preset). 'qam_fav' keeps the FAV paper's 2-head critic (the QAM code base, heads changed).
    config.num_critics = 2 if variant == 'fav' else 10  # Critic heads K.
    config.q_agg = 'pessimistic'  # Target aggregation mean - rho * std (Eq. (26)).
    config.rho = 0.5  # Pessimism rho (Table 3: 0.5; humanoidmaze 0 in the preset).
    # Released code (clip_grad=True): the global norm of the gradient of all parameters clipped at 1 before Adam.
    # The paper's text (Sec. 4) clips element-wise at 1 instead: --agent.grad_clip_norm=0 --agent.grad_clip_value=1.
    config.grad_clip_norm = 1.0
    config.grad_clip_value = 0.0
    # Inverse temperature tau of pi_beta exp(tau Q) (not the target rate `tau`). Default: the released get_config's
    # 0.3; per-domain values with `--preset=paper`.
    config.inv_temp = 0.3
    config.flow_steps = 10  # T: Euler steps of the policy flow and of the memoryless SDE (QAM Table 3).
    # Discretization of the memoryless SDE, its adjoint and the loss: 'released' (Euler-Maruyama with
    # sigma = sqrt(2 (1 - t + h)/(t + h)), last step an ODE step with f_beta, released qam.py) or 'exact'
    # (tiltbench's exact integration of the singular linear part and noise); see the module docstring.
    config.sde_scheme = 'released'
    # False (released default): f_fast is the full policy field (acts alone, control f_fast - f_beta). True (the
    # paper's Eq. (19)): f_fast is a residual on f_beta (policy field f_beta + f_fast).
    config.residual = False
    config.bam = False  # BAM ablation: released scheme = agents/bam.py (backprop through the SDE); see the docstring.
    config.bc_flow_target = True  # f_beta in the SDE / adjoint / loss from its Polyak target (released target_actor).
    # grad_a Q for g_T from the target critic (released use_target_grad=True; paper: Q_phi). Unused by the released
    # scheme's BAM, which differentiates the current critic (bam.py).
    config.target_critic_grad = True
    if variant == 'fql':
        # QAM-FQL BC coefficient alpha (Eq. (29), released fql_alpha); inf = plain QAM (Table 5; released
        # fql_alpha=0), acting with the flow. Table 4 mode: 30.
        config.alpha = 30.0
    if variant == 'edit':
        # QAM-EDIT L_inf edit radius (Eq. (30), released edit_scale); 0 = plain QAM (Table 5). Table 4 mode: 0.1.
        config.sigma_a = 0.1
        config.edit_entropy_target = -0.5  # Edit-policy target entropy per action dimension (released: -0.5 A).
    return config


# experiments/reproduce.py of the released code (the commands of the paper's runs; README.md's cube-triple commands
# agree) where it differs from QAM Table 4 (configs/qam_table4_hyperparameters.csv keeps the table as printed).
# {registry name: {Table 4 domain: {config key: reproduce.py value}}}; reproduce.py's fql_alpha=0 / edit_scale=0 are
# plain QAM (alpha = inf / sigma_a = 0 here) and match Table 4's inf / 0 where they occur.
REPRODUCE_PY = {
    'qam': {'cube-triple': {'inv_temp': 3.0}},  # Table 4: 10
    'qam_edit': {  # (tau, sigma_a); Table 4 in the comments
        'puzzle-3x3-sparse': {'inv_temp': 1.0},  # (3, 0.1)
        'puzzle-4x4-100M-sparse': {'inv_temp': 0.1},  # (3, 0.9)
        'cube-triple': {'inv_temp': 3.0},  # (10, 0.1)
        'cube-quadruple-100M': {'sigma_a': 0.1},  # (3, 0.5)
        'antmaze-giant': {'inv_temp': 10.0},  # (3, 0.1)
        'humanoidmaze-medium': {'inv_temp': 3.0},  # (1, 0.1)
        'humanoidmaze-large': {'inv_temp': 3.0},  # (1, 0.1)
    },
    'qam_fql': {  # (tau, alpha); Table 4 in the comments
        'scene-sparse': {'alpha': 300.0},  # (1, inf)
        'puzzle-4x4-100M-sparse': {'inv_temp': 3.0},  # (1, 3)
        'cube-triple': {'alpha': 300.0},  # (10, 30)
        'cube-quadruple-100M': {'inv_temp': 0.3},  # (1, 30)
        'antmaze-giant': {'alpha': 30.0},  # (3, 300)
        'humanoidmaze-medium': {'inv_temp': 1.0, 'alpha': 30.0},  # (3, inf)
        'humanoidmaze-large': {'inv_temp': 0.3},  # (1, 30)
    },
}


def released_preset(name, env_name, columns):
    """QAM Table 4 values of the domain of `env_name` ({config key: CSV column}), replaced by reproduce.py's where they
    differ (REPRODUCE_PY), under QAM Table 1's protocol (configs.presets.qam_protocol: K = 10, Table 3's rho and the
    paper discount, which reproduce.py's agree with, chunks of 5 on manipulation, sparse scene / puzzle)."""
    values = qam_table4(env_name, columns)
    values.update(REPRODUCE_PY.get(name, {}).get(qam_domain(env_name), {}))
    return {**qam_protocol(env_name), **values}


def paper_preset(env_name):
    """QAM's inverse temperature per domain (Table 4 / reproduce.py, see released_preset)."""
    return released_preset('qam', env_name, {'inv_temp': 'qam_tau'})


def uses_onestep(config) -> bool:
    return 'alpha' in config and math.isfinite(config.alpha)


def uses_edit(config) -> bool:
    return 'sigma_a' in config and config.sigma_a > 0


def validate(config):
    if not (0.0 <= config.inv_temp < math.inf):
        raise ValueError(f'inv_temp (QAM inverse temperature) must be finite and >= 0, got {config.inv_temp}.')
    if config.flow_steps < 1:
        raise ValueError(f'flow_steps must be >= 1, got {config.flow_steps}.')
    if config.sde_scheme not in SDE_SCHEMES:
        raise ValueError(f'sde_scheme must be one of {", ".join(SDE_SCHEMES)}, got {config.sde_scheme!r}.')
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
    """Gaussian edit policy pi(. | s, a~) (tanh-squashed by the caller) with a state-dependent std: the released
    TanhNormal on MLP([s; a~]) (GELU, last hidden layer activated, no LayerNorm), log std clipped to [-20, 2]."""

    hidden_dims: tuple
    action_dim: int

    @nn.compact
    def __call__(self, observations, actions):
        x = MLP(self.hidden_dims, activate_final=True)(jnp.concatenate([observations, actions], -1))
        means = nn.Dense(self.action_dim, kernel_init=default_init)(x)
        log_stds = nn.Dense(self.action_dim, kernel_init=default_init)(x)
        return means, jnp.clip(log_stds, -20.0, 2.0)


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
        'bc_flow': (field(), ((obs_dim,), (action_dim,), (1,))),  # f_beta (released actor_slow)
        'fast': (field(), ((obs_dim,), (action_dim,), (1,))),  # f_fast (released actor_fast)
    }
    if uses_onestep(config):
        nets['onestep'] = (field(), ((obs_dim,), (action_dim,)))
    if uses_edit(config):
        nets['edit'] = (EditPolicy(config.actor_hidden_dims, action_dim), ((obs_dim,), (action_dim,)))
        nets['edit_log_alpha'] = (LogScalar(), ())
    return nets


def target_networks(config):
    return ('critic', 'bc_flow') if config.bc_flow_target else ('critic',)


# ---- the memoryless SDE, the adjoints and the losses (pure functions, tested in float64) --------------------------
def sde_coefficients(flow_steps: int, scheme: str = 'released') -> dict:
    """Per-step coefficients (float64 numpy, shape (T,)) of `scheme` (see the module docstring):
    sampling step i: a_{i+1} = decay_i a_i + drift_i f_i + noise_i z_i, the last step the ODE step (1, h, 0) with the
    field `last_field` ('base': f_beta, 'policy': the policy field); lean adjoint step i: g_i = adj_decay_i g_{i+1} +
    adj_drift_i (grad_a f_beta(a_i, adj_time_i))^T g_{i+1}; loss term i pairs the control u(a_i, t_i) with
    adj_weight_i g_{i + adj_shift} and sigma_i; `cost` is step i's running-cost weight of ||u_i||^2 (BAM)."""
    h = 1.0 / flow_steps
    t = np.arange(flow_steps, dtype=np.float64) / flow_steps  # t_i = i/T, as the released code
    tn = t + h
    if scheme == 'released':
        sigma = np.sqrt(2.0 * (1.0 - t + h) / tn)
        drift = np.full_like(t, 2.0 * h)
        co = dict(decay=t / tn, drift=drift, noise=np.sqrt(h) * sigma, sigma=sigma, last_field='base')
        # adj + h VJP[2 f_beta(., t + h) - ./(t + h)](adj), every step the last included
        co.update(adj_time=tn, adj_decay=t / tn, adj_drift=drift.copy(), adj_weight=np.ones_like(t), adj_shift=0)
        co['cost'] = np.where(np.arange(flow_steps) < flow_steps - 1, 2.0 / sigma**2, 0.0)  # bam.py: no factor h
    elif scheme == 'exact':
        drift = (tn**2 - t**2) / tn
        noise = np.sqrt((tn**2 - t**2) - 2.0 / 3.0 * (tn**3 - t**3)) / tn
        co = dict(decay=t / tn, drift=drift, noise=noise, sigma=2.0 * np.sqrt(h) * noise / drift, last_field='policy')
        co.update(adj_time=t, adj_weight=drift / (2.0 * h), adj_shift=1, cost=drift**2 / (2.0 * noise**2))
    else:
        raise ValueError(f'Unknown sde_scheme {scheme!r}; valid: {", ".join(SDE_SCHEMES)}.')
    co.update(h=h, t=t, decay=co['decay'].copy(), drift=co['drift'].copy(), noise=co['noise'].copy())
    co['decay'][-1], co['drift'][-1], co['noise'][-1] = 1.0, h, 0.0  # the final ODE (Euler) step
    if scheme == 'exact':  # the adjoint of the sampling steps themselves
        co.update(adj_decay=co['decay'].copy(), adj_drift=co['drift'].copy())
    return co


def _arrays(co, keys, dtype, stop=None):
    return tuple(jnp.asarray(co[k][:stop], dtype) for k in keys)


def _time(a, t):
    return jnp.broadcast_to(t, (*a.shape[:-1], 1)).astype(a.dtype)


def _sde_steps(field_fn, a0, noises, co):
    """Steps 0..T-2 of the SDE with field_fn(a, t) -> (policy field, aux). Returns (a_1..a_{T-1}, aux_0..aux_{T-2})."""

    def body(a, x):
        t, decay, drift, noise, z = x
        f, aux = field_fn(a, _time(a, t))
        a = decay * a + drift * f + noise * z
        return a, (a, aux)

    stop = len(co['t']) - 1
    xs = (*_arrays(co, ('t', 'decay', 'drift', 'noise'), a0.dtype, stop), noises[:stop])
    return jax.lax.scan(body, a0, xs)[1]


def _final_step(policy_fn, base_fn, a, co):
    """The last step, an Euler ODE step a_T = a_{T-1} + h f(a_{T-1}, t_{T-1}) with f_beta or the policy field."""
    field = base_fn if co['last_field'] == 'base' else policy_fn
    return a + co['h'] * field(a, _time(a, co['t'][-1]))


def memoryless_sde(policy_fn, base_fn, a0, noises, co):
    """Trajectory a_0..a_T (shape (T+1, *a0.shape)) of the discretized memoryless SDE (Eq. (24)) with the policy field
    policy_fn(a, t) (and base_fn = f_beta for the released last step); `noises` (T, *a0.shape) standard normal (the
    last one unused: the final step is an ODE step)."""
    states, _ = _sde_steps(lambda a, t: (policy_fn(a, t), ()), a0, noises, co)
    traj = jnp.concatenate([a0[None], states])
    return jnp.concatenate([traj, _final_step(policy_fn, base_fn, traj[-1], co)[None]])


def _adjoint_scan(step_vjp, traj, g_final, co, extra=()):
    """g_T = g_final; g_i = step_vjp((a_i, t_i-coefficients...), g_{i+1}) for i = T-1..0. Returns g_0..g_T."""

    def body(g, x):
        g = step_vjp(x, g)
        return g, g

    xs = (traj[:-1], *_arrays(co, ('adj_time', 'adj_decay', 'adj_drift', *extra), g_final.dtype))
    return jnp.concatenate([jax.lax.scan(body, g_final, xs, reverse=True)[1], g_final[None]])


def lean_adjoint(base_fn, traj, g_final, co):
    """Lean adjoint states g_0..g_T (shape (T+1, ...)), g_T = g_final (Eq. (25)): the VJP chain through the behavior
    field only, g_i = adj_decay_i g_{i+1} + adj_drift_i (grad_a f_beta(a_i, adj_time_i))^T g_{i+1}. Released:
    g_{i+1} + h VJP[2 f_beta(., t_i + h) - ./(t_i + h)](g_{i+1}); exact: the VJP of the exact sampling steps."""

    def step_vjp(x, g):
        a, t, decay, drift = x
        return decay * g + drift * jax.vjp(lambda y: base_fn(y, _time(y, t)), a)[1](g)[0]

    return _adjoint_scan(step_vjp, traj, g_final, co)


def basic_adjoint(policy_fn, control_fn, traj, g_final, co):
    """The exact scheme's BAM adjoint g_i = d/da_i [sum_{j >= i} cost_j ||u_j||^2 - inv_temp Q(a_T)] (Eq. (10)-(11)):
    VJPs through the discrete steps with the policy field plus the running cost's gradient. Returns g_0..g_T."""

    def step_vjp(x, g):
        a, t, decay, drift, cost = x

        def step(y):
            ty = _time(y, t)
            return decay * y + drift * policy_fn(y, ty), cost * jnp.sum(control_fn(y, ty) ** 2)

        return jax.vjp(step, a)[1]((g, jnp.ones((), g.dtype)))[0]

    return _adjoint_scan(step_vjp, traj, g_final, co, extra=('cost',))


def paired_adjoints(adjoints, co):
    """The adjoint each loss term i is matched with: adj_weight_i g_{i + adj_shift} (released: g_i; exact:
    drift_i/(2h) g_{i+1}). adjoints: g_0..g_T; returns shape (T, ...)."""
    T = len(co['t'])
    w = jnp.asarray(co['adj_weight'], adjoints.dtype).reshape(T, *(1,) * (adjoints.ndim - 1))
    return w * adjoints[co['adj_shift'] : co['adj_shift'] + T]


def adjoint_matching_loss(control, paired, co):
    """Eq. (21), discretized: sum_i || 2 u_i/sigma_i + sigma_i g_i ||^2 with the paired adjoints. control, paired:
    (T, B, A). Summed over steps and action dimensions, averaged over the batch (released actor_loss)."""
    sigma = jnp.asarray(co['sigma'], control.dtype).reshape(-1, *(1,) * (control.ndim - 1))
    return jnp.mean(jnp.sum((2.0 * control / sigma + sigma * paired) ** 2, axis=(0, -1)))


def bam_objective(fields_fn, base_fn, q_fn, a0, noises, co, inv_temp):
    """agents/bam.py (released scheme): -inv_temp mean q_fn(a_T) + mean sum_{i < T-1} cost_i ||u(a_i, t_i)||^2 on a
    trajectory that carries gradients (backprop through time). fields_fn(a, t) -> (policy field, control u).
    Returns (loss, (running cost, mean q))."""

    def field(a, t):
        f, u = fields_fn(a, t)
        return f, jnp.sum(u**2, axis=-1)

    states, sq = _sde_steps(field, a0, noises, co)
    a_last = jnp.concatenate([a0[None], states])[-1]
    a_final = _final_step(lambda a, t: fields_fn(a, t)[0], base_fn, a_last, co)
    cost = jnp.asarray(co['cost'][:-1], sq.dtype).reshape(-1, *(1,) * (sq.ndim - 1))
    bc = jnp.mean(jnp.sum(cost * sq, axis=0))
    q = jnp.mean(q_fn(a_final))
    return -inv_temp * q + bc, (bc, q)


# ---- policies ---------------------------------------------------------------------------------------------------
def fields(learner, params, base_params, observations):
    """(policy field, control u = policy field - f_beta) as functions of (a, t): (f_fast, f_fast - f_beta), or with
    `residual` (f_beta + f_fast, f_fast). f_fast from `params`, f_beta from `base_params`."""

    def fast(a, t):
        return learner.apply('fast', params, observations, a, t)

    def base(a, t):
        return learner.apply('bc_flow', base_params, observations, a, t)

    if learner.config.residual:
        return (lambda a, t: base(a, t) + fast(a, t)), fast
    return fast, (lambda a, t: fast(a, t) - base(a, t))


def flow_actions(learner, params, observations, noises, behavior=False):
    """Euler integration from noise of the policy field (f_fast, or f_beta + f_fast with `residual`; online f_beta) or,
    with `behavior`, of f_beta alone (released compute_flow_actions), clipped."""
    if behavior:
        field = lambda x, t: learner.apply('bc_flow', params, observations, x, t)  # noqa: E731
    else:
        field = fields(learner, params, params, observations)[0]
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
    """The acting policy (also the critic-target policy): the QAM-FQL one-step policy, or the flow (f_beta alone at
    inv_temp = 0) plus the QAM-EDIT edit. Stochastic at every temperature (as in the released code)."""
    noise_rng, edit_rng = jax.random.split(rng)
    noises = jax.random.normal(noise_rng, (*observations.shape[:-1], learner.action_dim))
    if uses_onestep(learner.config):
        return jnp.clip(learner.apply('onestep', params, observations, noises), -1.0, 1.0)
    actions = flow_actions(learner, params, observations, noises, behavior=learner.config.inv_temp == 0)
    if uses_edit(learner.config):
        actions = edit_actions(learner, params, observations, actions, edit_rng)[0]
    return actions


# ---- losses -----------------------------------------------------------------------------------------------------
def adjoint_matching(learner, params, state, observations, a0, noises):
    """Algorithm 1 from the SDE's initial actions a0 (B, A) and noises (T, B, A): the adjoint-matching loss of f_fast
    (lean adjoint; the basic one with `bam` under the exact scheme), or the released scheme's BAM objective."""
    cfg = learner.config
    co = sde_coefficients(cfg.flow_steps, cfg.sde_scheme)
    base_params = state.target_params if cfg.bc_flow_target else state.params

    def base(a, t):
        return learner.apply('bc_flow', base_params, observations, a, t)

    if cfg.bam and cfg.sde_scheme == 'released':  # agents/bam.py: backprop through the SDE, current critic
        policy, control = fields(learner, params, base_params, observations)

        def q_fn(a):
            return aggregate_q(learner.apply('critic', state.params, observations, a), cfg.q_agg, cfg.rho)

        def both(a, t):
            return policy(a, t), control(a, t)

        loss, (bc, q) = bam_objective(both, base, q_fn, a0, noises, co, cfg.inv_temp)
        return loss, {'actor/bam_loss': loss, 'actor/bam_bc_loss': bc, 'actor/bam_q': q}

    policy, control = fields(learner, state.params, base_params, observations)
    traj = memoryless_sde(policy, base, a0, noises, co)
    critic_params = state.target_params if cfg.target_critic_grad else state.params

    def q_sum(a):
        return learner.apply('critic', critic_params, observations, jnp.clip(a, -1.0, 1.0)).mean(axis=0).sum()

    g_final = -cfg.inv_temp * jax.grad(q_sum)(traj[-1])  # g_T = -tau grad_a Q(s, clip(a_T))
    if cfg.bam:
        adjoints = basic_adjoint(policy, control, traj, g_final, co)
    else:
        adjoints = lean_adjoint(base, traj, g_final, co)
    paired = jax.lax.stop_gradient(paired_adjoints(adjoints, co))
    states = jax.lax.stop_gradient(traj[:-1])
    times = jnp.broadcast_to(jnp.asarray(co['t'], states.dtype)[:, None, None], (*states.shape[:-1], 1))
    obs = jnp.broadcast_to(observations, (cfg.flow_steps, *observations.shape))
    control = fields(learner, params, base_params, obs)[1](states, times)
    loss = adjoint_matching_loss(control, paired, co)
    g_abs = jnp.abs(g_final)
    info = {
        'actor/am_loss': loss,
        'actor/adj_final_abs': g_abs.mean(),  # released actor/adj_mean
        'actor/adj_final_max': g_abs.max(),  # released actor/adj_max
        'actor/adj_final_std': g_abs.std(),  # released actor/adj_std
        'actor/adj_abs': jnp.abs(paired).mean(),
        'actor/control_abs': jnp.abs(control).mean(),
        'actor/sde_action_abs': jnp.abs(traj[-1]).mean(),
    }
    return loss, info


def loss(learner, params, state, batch, rng):
    cfg = learner.config
    obs, actions = batch['observations'], batch['actions']
    next_rng, fm_rng, a0_rng, z_rng, noise_rng, edit_rng = jax.random.split(rng, 6)

    # Critic: TD onto the pessimistic target (Eq. (26)) with actions of the acting policy (Eq. (23)).
    next_actions = sample_actions(learner, state.params, batch['next_observations'], next_rng)
    critic_loss, info = critic_td_loss(learner, params, state, batch, next_actions)

    # f_beta: flow matching on the data (Eq. (17)); f_fast: adjoint matching (Eq. (21)) or BAM.
    bc_loss = flow_matching_loss(
        lambda x, t: learner.apply('bc_flow', params, obs, x, t), actions, fm_rng, batch.get('valid')
    )
    a0 = jax.random.normal(a0_rng, actions.shape, actions.dtype)
    noises = jax.random.normal(z_rng, (cfg.flow_steps, *actions.shape), actions.dtype)
    am_loss, am_info = adjoint_matching(learner, params, state, obs, a0, noises)
    total = critic_loss + bc_loss + am_loss
    info.update(am_info)
    info['actor/bc_flow_loss'] = bc_loss

    if uses_onestep(cfg) or uses_edit(cfg):
        flow_noises = jax.random.normal(noise_rng, actions.shape)
        flow_a = jax.lax.stop_gradient(flow_actions(learner, state.params, obs, flow_noises))
    if uses_onestep(cfg):
        # QAM-FQL (Eq. (29)): -Q(s, mu(s, z)) + alpha ||mu(s, z) - ODE(f, z)||^2.
        onestep = learner.apply('onestep', params, obs, flow_noises)
        distill_loss = jnp.mean((onestep - flow_a) ** 2)
        q = learner.apply('critic', state.params, obs, jnp.clip(onestep, -1.0, 1.0)).mean(axis=0)
        total = total - q.mean() + cfg.alpha * distill_loss
        info.update(
            {'actor/distill_loss': distill_loss, 'actor/onestep_q': q.mean(), 'actor/onestep_q_loss': -q.mean()}
        )
    if uses_edit(cfg):
        # QAM-EDIT (Eq. (30), FEdit Eq. (77)-(78)): -Q(s, clip(a~ + sigma_a delta)) + alpha_ent log pi(delta), with
        # alpha_ent tuned so that the entropy stays at edit_entropy_target * action_dim.
        edited, log_prob = edit_actions(learner, params, obs, flow_a, edit_rng)
        q = learner.apply('critic', state.params, obs, edited).mean(axis=0)
        ent_coef = jnp.exp(learner.apply('edit_log_alpha', state.params))
        entropy_loss = jnp.mean(ent_coef * log_prob)
        entropy = -jax.lax.stop_gradient(log_prob).mean()
        alpha_loss = jnp.exp(learner.apply('edit_log_alpha', params)) * (
            entropy - cfg.edit_entropy_target * learner.action_dim
        )
        total = total - q.mean() + entropy_loss + alpha_loss
        info.update(
            {
                'actor/edit_q': q.mean(),
                'actor/edit_q_loss': -q.mean(),
                'actor/edit_entropy_loss': entropy_loss,
                'actor/edit_alpha_loss': alpha_loss,
                'actor/edit_entropy': entropy,
                'actor/edit_alpha': ent_coef,
                'actor/edit_shift': jnp.abs(edited - flow_a).mean(),
            }
        )
    return total, info


PAPER = 'qam'
PRESETS = {'qam': paper_preset}
