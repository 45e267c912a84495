"""Value Gradient Flow (Xu, Hu, Sojoudi, Zhang 2026): no parameterized policy. A BC flow policy mu_hat gives N
particles per state; L steps of the particle gradient flow of Eq. (7) move them toward high Q (Algorithm 1). The critic
is trained by TD learning on the particles after L_train steps from s' (averaged); the action is the best-of-N particle
after L_test steps, and L_test can differ from L_train (test-time scaling; L_test = 0 is best-of-N BC sampling)."""

import re

import jax
import jax.numpy as jnp
import optax

from agents.common.kernels import median_bandwidth, rbf
from agents.common.networks import VectorField, euler_flow, flow_matching_loss
from agents.common.rl import aggregate_q, critic_networks, require_positive
from configs.common import base_config
from configs.presets import PresetError, paper_discount, read_table


def get_config():
    config = base_config('vgf')
    config.flow_steps = 10  # Euler steps of the BC flow policy mu_hat (Table 4).
    config.num_particles = 5  # Particles N per state (Table 4).
    config.train_vgf_steps = 1  # L_train: VGF steps from s' for the TD target (Tables 5-6 per task, `--preset=paper`).
    config.test_vgf_steps = (0, 1, 2, 3)  # L_test values evaluated at every evaluation (Table 4); one score each.
    config.primary_test_steps = -1  # L_test of the primary score (final_score); -1 = L_train. Evaluated first.
    config.explore_vgf_steps = 0  # VGF steps of online exploration actions (official code: 0, best-of-N BC).
    config.vgf_step_size = 0.05  # Step size epsilon of Eq. (7) (Tables 5-6 per task); the Adam learning rate.
    config.particle_optimizer = 'adam'  # 'adam': Adam on -phi, fresh state per flow (official code); 'sgd': a+eps*phi.
    config.bandwidth = 0.0  # Kernel temperature tau of k = exp(-||x - y||^2 / tau); 0 = median heuristic per state.
    config.maxent = False  # Full MaxEnt Eq. (7): grad Q / alpha plus the repulsive kernel term (paper: off).
    config.alpha = 1.0  # MaxEnt temperature alpha (only with maxent=True; official code default 1.0).
    config.grad_q_agg = 'mean'  # Critic-head aggregation of the Q whose action gradient drives Eq. (7) (App. C).
    config.train_select = 'mean'  # Particle reduction of the TD target Q(s', a_j): 'mean' (Table 4) or 'max'.
    config.eval_select = 'max'  # Action from the particles: 'max' = best-of-N by Q (Eq. (4), Table 4) or 'random'.
    config.grad_net = False  # Learn f(s, a) ~ grad_a Q(s, a) on dataset pairs and use it in Eq. (7) (Sec. 3.2).
    return config


def _vgf_table():
    return {r['env']: r for r in read_table('vgf_hyperparameters.csv')}


def paper_preset(env_name):
    """Tables 5-6 (L_train, epsilon; OGBench rows cover all five tasks of an environment), the discount and the
    critic-head aggregation of Table 4 ('min' for D4RL and OGBench antmaze, 'mean' otherwise)."""
    key = re.sub(r'-task\d+-(v\d+)$', r'-\1', env_name)
    rows = _vgf_table()
    if key not in rows:
        raise PresetError(
            f'No VGF paper preset for {env_name!r}. Environments with presets (Tables 5-6): '
            f'{", ".join(sorted(rows))} (OGBench rows cover -task1..5- of each).'
        )
    is_d4rl = key.endswith('-v2')
    q_agg = 'min' if is_d4rl or key.startswith('antmaze') else 'mean'
    return {
        'train_vgf_steps': int(rows[key]['train_vgf_steps']),
        'vgf_step_size': float(rows[key]['vgf_step_size']),
        'q_agg': q_agg,
        'discount': paper_discount(env_name),
    }


def l_test_values(config):
    steps = config.test_vgf_steps
    return tuple(int(s) for s in (steps if isinstance(steps, (tuple, list)) else (steps,)))


def validate(config):
    require_positive(config, 'flow_steps', 'num_particles', 'vgf_step_size', 'alpha')
    for k in ('train_vgf_steps', 'explore_vgf_steps'):
        if int(config[k]) != config[k] or config[k] < 0:
            raise ValueError(f'{k} must be an integer >= 0, got {config[k]}.')
    steps = config.test_vgf_steps
    steps = steps if isinstance(steps, (tuple, list)) else (steps,)
    if not steps or any(int(s) != s or s < 0 for s in steps):
        raise ValueError(f'test_vgf_steps must be integers >= 0 (one or a tuple such as (0, 1, 3)), got {steps}.')
    if int(config.primary_test_steps) != config.primary_test_steps or config.primary_test_steps < -1:
        raise ValueError(f'primary_test_steps must be -1 (= train_vgf_steps) or >= 0, got {config.primary_test_steps}.')
    if config.bandwidth is not None and not config.bandwidth >= 0:
        raise ValueError(f'bandwidth must be >= 0 (0 = median heuristic), got {config.bandwidth}.')
    choices = {
        'particle_optimizer': ('adam', 'sgd'),
        'train_select': ('mean', 'max'),
        'eval_select': ('max', 'random'),
        'grad_q_agg': ('mean', 'min', 'pessimistic'),
    }
    for k, valid in choices.items():
        if config[k] not in valid:
            raise ValueError(f'{k} must be one of {", ".join(map(repr, valid))}, got {config[k]!r}.')


def eval_variants(config):
    """One evaluation per L_test (labels 'L0', 'L3', ...), the primary (primary_test_steps, default L_train) first."""
    primary = config.train_vgf_steps if config.primary_test_steps < 0 else config.primary_test_steps
    order = [int(primary)] + [s for s in dict.fromkeys(l_test_values(config)) if s != primary]
    return [(f'L{s}', {'test_steps': s}) for s in order]


def networks(config, obs_dim, action_dim):
    nets = {
        **critic_networks(config, obs_dim, action_dim),
        'bc_flow': (
            VectorField(config.actor_hidden_dims, action_dim, config.actor_layer_norm),
            ((obs_dim,), (action_dim,), (1,)),
        ),
    }
    if config.grad_net:  # f(s, a) ~ grad_a Q(s, a), the size of the critic (official a_vgf.py)
        nets['grad_field'] = (
            VectorField(config.value_hidden_dims, action_dim, config.layer_norm),
            ((obs_dim,), (action_dim,)),
        )
    return nets


def target_networks(config):
    return ('critic',)


# ---- the gradient flow ------------------------------------------------------------------------------------------
def vgf_direction(particles, grads, tau, maxent=False, alpha=1.0):
    """phi(x_i) of Eq. (7) for particles (..., N, d) with value gradients grads_j = grad_a Q(s, a_j), k = rbf(tau):
    w/o MaxEnt (default): (1/N) sum_j k(a_j, x_i) grads_j;
    MaxEnt:               (1/N) sum_j [k(a_j, x_i) grads_j / alpha + grad_{a_j} k(a_j, x_i)],
    with grad_{a_j} k(a_j, x_i) = (2 / tau) (x_i - a_j) k(a_j, x_i) (the repulsive term)."""
    tau = jnp.asarray(tau)[..., None, None]
    k = rbf(particles, particles, tau)  # k[..., i, j] = k(x_i, a_j), symmetric
    drive = k @ grads
    if not maxent:
        return drive / particles.shape[-2]
    repulse = (2.0 / tau) * (k.sum(-1, keepdims=True) * particles - k @ particles)
    return (drive / alpha + repulse) / particles.shape[-2]


def run_flow(grad_fn, particles, num_steps: int, config):
    """L steps of Eq. (7) from `particles` (..., N, d), each followed by clipping to [-1, 1]. `grad_fn(particles)` gives
    grad_a Q at every particle. 'sgd': a <- a + eps * phi(a); 'adam': Adam with learning rate eps on the ascent
    direction phi, its moments started fresh for every flow (official code, paper App. C)."""
    if num_steps == 0:
        return particles
    opt = optax.adam(config.vgf_step_size) if config.particle_optimizer == 'adam' else optax.sgd(config.vgf_step_size)
    fixed_tau = config.bandwidth or 0.0

    def body(carry, _):
        x, opt_state = carry
        tau = fixed_tau if fixed_tau > 0 else median_bandwidth(x)
        phi = vgf_direction(x, grad_fn(x), tau, config.maxent, config.alpha)
        updates, opt_state = opt.update(-phi, opt_state, x)
        return (jnp.clip(x + updates, -1.0, 1.0), opt_state), None

    (x, _), _ = jax.lax.scan(body, (particles, opt.init(particles)), None, length=num_steps)
    return x


def q_grads(learner, params, observations, actions):
    """grad_a Q(s, a) by autodiff, critic heads aggregated by grad_q_agg."""
    cfg = learner.config

    def total_q(a):
        return aggregate_q(learner.apply('critic', params, observations, a), cfg.grad_q_agg, cfg.rho).sum()

    return jax.grad(total_q)(actions)


def value_grads(learner, params, observations, actions):
    """The value gradients of Eq. (7): grad_a Q(s, a), or the learned field f(s, a) when grad_net is on."""
    if learner.config.grad_net:
        return learner.apply('grad_field', params, observations, actions)
    return q_grads(learner, params, observations, actions)


def bc_particles(learner, params, observations, rng):
    """N BC flow samples per state: observations (B, obs_dim) -> (repeated observations (B, N, obs_dim),
    particles (B, N, action_dim))."""
    n = learner.config.num_particles
    obs = jnp.broadcast_to(observations[..., None, :], (*observations.shape[:-1], n, observations.shape[-1]))
    noises = jax.random.normal(rng, (*obs.shape[:-1], learner.action_dim))
    field = lambda x, t: learner.apply('bc_flow', params, obs, x, t)  # noqa: E731
    return obs, euler_flow(field, noises, learner.config.flow_steps)


def vgf_particles(learner, params, observations, rng, num_steps: int):
    """Algorithm 1, function VGF: N BC particles moved by `num_steps` steps of Eq. (7), using `params` (no gradient).
    Returns (repeated observations, BC particles, moved particles)."""
    obs, init = bc_particles(learner, params, observations, rng)
    moved = run_flow(lambda a: value_grads(learner, params, obs, a), init, num_steps, learner.config)
    return obs, init, jax.lax.stop_gradient(moved)


# ---- losses and acting ------------------------------------------------------------------------------------------
def loss(learner, params, state, batch, rng):
    cfg = learner.config
    obs, actions = batch['observations'], batch['actions']
    next_rng, fm_rng = jax.random.split(rng)

    # Critic (Algorithm 1, lines 11-12): y = r + gamma * mask * select_j agg_k Q_target_k(s', a_j^{L_train}); the flow
    # uses the current critic (state.params), the target network evaluates the moved particles (official code).
    next_obs, init, moved = vgf_particles(
        learner, state.params, batch['next_observations'], next_rng, cfg.train_vgf_steps
    )
    next_q = aggregate_q(learner.apply('critic', state.target_params, next_obs, moved), cfg.q_agg, cfg.rho)
    next_q = next_q.mean(axis=-1) if cfg.train_select == 'mean' else next_q.max(axis=-1)
    target = batch['rewards'] + cfg.discount * batch['masks'] * next_q
    qs = learner.apply('critic', params, obs, actions)
    critic_loss = jnp.mean((qs - target) ** 2)  # the TD regression of rl.critic_td_loss, particle target

    # BC flow policy mu_hat (Algorithm 1, line 10; flow matching).
    bc_loss = flow_matching_loss(lambda x, t: learner.apply('bc_flow', params, obs, x, t), actions, fm_rng)
    info = {
        'critic/loss': critic_loss,
        'critic/q_mean': qs.mean(),
        'critic/q_max': qs.max(),
        'critic/q_min': qs.min(),
        'actor/bc_flow_loss': bc_loss,
        'vgf/next_q': next_q.mean(),
        'vgf/bc_particle_std': jnp.std(init, axis=-2).mean(),
        'vgf/particle_std': jnp.std(moved, axis=-2).mean(),
        'vgf/move': jnp.linalg.norm(moved - init, axis=-1).mean(),
    }
    total = critic_loss + bc_loss

    if cfg.grad_net:  # min_f E_{(s,a)~D} ||f(s, a) - grad_a Q(s, a)||^2 (Sec. 3.2, "Practical consideration")
        score = jax.lax.stop_gradient(q_grads(learner, state.params, obs, actions))
        grad_loss = jnp.mean((learner.apply('grad_field', params, obs, actions) - score) ** 2)
        info.update({'grad_net/loss': grad_loss, 'grad_net/rel_error': grad_loss / (jnp.mean(score**2) + 1e-12)})
        total = total + grad_loss
    return total, info


def sample_actions(learner, params, observations, rng, temperature=1.0, test_steps=None):
    """Algorithm 1, evaluation: VGF for L_test = `test_steps` steps, then best-of-N by Q (Eq. (4)). `test_steps=None`
    (online exploration at temperature 1) uses explore_vgf_steps. The BC noise is not scaled by the temperature."""
    cfg = learner.config
    flow_rng, select_rng = jax.random.split(rng)
    steps = cfg.explore_vgf_steps if test_steps is None else int(test_steps)
    obs, _, particles = vgf_particles(learner, params, observations, flow_rng, steps)
    if cfg.eval_select == 'max':
        idx = jnp.argmax(aggregate_q(learner.apply('critic', params, obs, particles), cfg.q_agg, cfg.rho), axis=-1)
    else:
        idx = jax.random.randint(select_rng, particles.shape[:-2], 0, particles.shape[-2])
    return jnp.take_along_axis(particles, idx[..., None, None], axis=-2)[..., 0, :]
