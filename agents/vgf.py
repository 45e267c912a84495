"""Value Gradient Flow (Xu, Hu, Sojoudi, Zhang 2026): no parameterized policy. A BC flow policy mu_hat gives N
particles per state; L steps of the particle gradient flow of Eq. (7) move them toward high Q (Algorithm 1). The critic
is trained by TD learning on the particles after L_train steps from s' (averaged); the action is the best-of-N particle
after L_test steps, and L_test can differ from L_train (test-time scaling; L_test = 0 is best-of-N BC sampling).

Defaults and `--preset=paper` follow the released code (github ryanxhr/vgf, agents/vgf.py, main.py, run_scripts/):
the MaxEnt form of Eq. (7) is always on there (SVGD with the median-heuristic RBF kernel, differentiated through its
bandwidth), N = 10, ReLU MLPs with LayerNorm before the activation, L_test in {0, 1, 2, 3}, D4RL locomotion rewards
scaled by `--normalize_r`. The paper's text versions are switches (`maxent=False`: "we use the w/o MaxEnt objective",
Sec. 3.2; `num_particles=5`)."""

import re

import jax
import jax.numpy as jnp
import optax

from agents.common.networks import ACTIVATIONS, Critic, VectorField, euler_flow, flow_matching_loss
from agents.common.rl import aggregate_q, apply_valid, require_positive, td_discount
from configs.common import base_config
from configs.presets import PresetError, paper_discount, read_table


def get_config():
    config = base_config('vgf')
    # Online: the code's main.py (start_training 5000) updates when its loop index i + 1 >= offline_steps + 5000, and
    # its first online iteration (i = offline_steps + 1) takes no environment step, so the first gradient step comes
    # after its 4998th environment step (that skipped iteration also leaves it online_steps - 1 environment steps in
    # all; here online_steps).
    config.start_training = 4998
    config.q_agg = 'min'  # train_q_agg: heads of the TD target and of best-of-N (code default 'min'; preset per task).
    config.activation = 'relu'  # --agent.activations of the code ('relu' in every script); 'gelu' (FQL) or 'swish'.
    config.ln_first = True  # LayerNorm before the activation (the code's MLP, ln_first=True); False: after (FQL).
    config.flow_steps = 10  # Euler steps of the BC flow policy mu_hat (bc_flow_steps=10 in every script, Table 4).
    config.num_particles = 10  # Particles N per state (code default and every vgf.py script: 10; paper text: N = 5).
    config.train_vgf_steps = 1  # L_train: VGF steps from s' for the TD target (code default 1; preset per task).
    config.test_vgf_steps = (0, 1, 2, 3)  # L_test values evaluated at every evaluation (main.py; Table 4).
    config.primary_test_steps = -1  # L_test of the primary score; -1: L_train if listed, else the closest listed one.
    config.explore_vgf_steps = 0  # VGF steps of online exploration actions (code: 0, best-of-N BC).
    config.vgf_step_size = 0.1  # Step size epsilon of Eq. (7): the Adam learning rate (vgf_lr, code default 0.1).
    config.particle_optimizer = 'adam'  # 'adam': Adam on -phi, fresh state per flow (the code); 'sgd': a+eps*phi.
    config.bandwidth = 0.0  # Fixed kernel temperature tau of k = exp(-||x - y||^2 / tau); 0 = median heuristic (code).
    config.maxent = True  # Eq. (7) with MaxEnt: grad Q / alpha plus the repulsive kernel term (code, always on);
    # False: the paper's "w/o MaxEnt" (Sec. 3.2), (1/N) sum_j k(a_j, x) grad Q(s, a_j).
    config.alpha = 1.0  # MaxEnt temperature alpha (vgf_alpha; code default 1.0, preset per domain from the scripts).
    config.bandwidth_grad = True  # Repulsion = -grad_x sum_ij k(x_i, sg(x_j)) with the median bandwidth a function of
    # x, as jax.grad differentiates the code's rbf_kernel; False: the bandwidth held fixed (Eq. (7)'s grad_a k).
    config.normalize_r = False  # --normalize_r of the code (default 0; the D4RL scripts pass 1): rewards x
    # normalize_r_scale in the TD target, offline data and online transitions alike.
    config.normalize_r_scale = 0.0  # Set by the D4RL loader: 1000 / (max - min) episode return (locomotion), 1 antmaze.
    config.grad_q_agg = 'mean'  # Critic-head aggregation of the Q whose action gradient drives Eq. (7) (vgf_q_agg).
    config.train_select = 'mean'  # Particle reduction of the TD target Q(s', a_j): 'mean' (Table 4) or 'max'.
    config.eval_select = 'max'  # Action from the particles: 'max' = best-of-N by Q (Eq. (4), Table 4) or 'random'.
    config.grad_net = False  # Learn f(s, a) ~ grad_a Q(s, a) on dataset pairs and use it in Eq. (7) (Sec. 3.2).
    return config


def _vgf_table():
    return {r['env']: r for r in read_table('vgf_hyperparameters.csv')}


# vgf_alpha of the released scripts, per domain and setting (run_scripts/run_vgf_{off,off2on}_{d4rl,ogbench}.sh).
# run_vgf_off_d4rl.sh sweeps {0.05, 0.1}: 0.1 is the value of run_vgf_off2on_d4rl.sh on the same tasks with the same
# other values; run_vgf_off_ogbench.sh sweeps {0.2, 0.5} (puzzle-4x4 task4): its first value.
RELEASED_ALPHA = {
    ('d4rl', 'offline'): 0.1,
    ('d4rl', 'off2on'): 0.1,
    ('ogbench', 'offline'): 0.2,
    ('ogbench', 'off2on'): 1.0,
}
# vgf_lr of the released scripts where they differ from Tables 5-6 (antmaze-large: both D4RL scripts, L_train = 5).
RELEASED_STEP_SIZE = {'antmaze-large-play-v2': 0.1, 'antmaze-large-diverse-v2': 0.1}


def paper_preset(env_name, setting='offline'):
    """Tables 5-6 (L_train, epsilon; OGBench rows cover all five tasks of an environment) where the release scripts
    do not differ, the discount and the critic-head aggregation of Table 4 ('min' for D4RL and OGBench antmaze,
    'mean' otherwise), and from the scripts: alpha per domain and setting ('offline' runs: run_vgf_off_*.sh;
    'off2on' runs: run_vgf_off2on_*.sh, one alpha for both phases), vgf_step_size on D4RL antmaze-large and
    normalize_r on D4RL."""
    if setting not in ('offline', 'off2on'):
        raise ValueError(f"setting must be 'offline' or 'off2on', got {setting!r}.")
    key = re.sub(r'-task\d+-(v\d+)$', r'-\1', env_name)
    rows = _vgf_table()
    if key not in rows:
        raise PresetError(
            f'No VGF paper preset for {env_name!r}. Environments with presets (Tables 5-6): '
            f'{", ".join(sorted(rows))} (OGBench rows cover -task1..5- of each).'
        )
    is_d4rl = key.endswith('-v2')
    out = {
        'train_vgf_steps': int(rows[key]['train_vgf_steps']),
        'vgf_step_size': RELEASED_STEP_SIZE.get(key, float(rows[key]['vgf_step_size'])),
        'q_agg': 'min' if is_d4rl or key.startswith('antmaze') else 'mean',
        'discount': paper_discount(env_name),
        'alpha': RELEASED_ALPHA[('d4rl' if is_d4rl else 'ogbench', setting)],
    }
    if is_d4rl:
        out['normalize_r'] = True
    return out


def l_test_values(config):
    steps = config.test_vgf_steps
    return tuple(int(s) for s in (steps if isinstance(steps, (tuple, list)) else (steps,)))


def primary_test_steps(config):
    """The L_test of the primary score: primary_test_steps, or (-1) L_train if it is among test_vgf_steps, else the
    listed L_test closest to L_train (the larger on a tie). The code logs every L_test and has no primary."""
    if config.primary_test_steps >= 0:
        return int(config.primary_test_steps)
    train = int(config.train_vgf_steps)
    return min(l_test_values(config), key=lambda s: (abs(s - train), -s))


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
        raise ValueError(f'primary_test_steps must be -1 or one of test_vgf_steps, got {config.primary_test_steps}.')
    if config.primary_test_steps >= 0 and int(config.primary_test_steps) not in l_test_values(config):
        raise ValueError(
            f'primary_test_steps must be -1 or one of test_vgf_steps {tuple(steps)}, got {config.primary_test_steps}.'
        )
    if config.bandwidth is not None and not config.bandwidth >= 0:
        raise ValueError(f'bandwidth must be >= 0 (0 = median heuristic), got {config.bandwidth}.')
    if not config.normalize_r_scale >= 0:
        raise ValueError(f'normalize_r_scale must be >= 0, got {config.normalize_r_scale}.')
    if config.normalize_r and not config.normalize_r_scale > 0:
        raise ValueError(
            'normalize_r needs normalize_r_scale > 0: the D4RL hdf5 loader sets it (1000 / return range of the '
            'locomotion data, 1 on antmaze); on other tasks set --agent.normalize_r_scale or drop normalize_r.'
        )
    choices = {
        'particle_optimizer': ('adam', 'sgd'),
        'train_select': ('mean', 'max'),
        'eval_select': ('max', 'random'),
        'grad_q_agg': ('mean', 'min', 'pessimistic'),
        'activation': tuple(ACTIVATIONS),
    }
    for k, valid in choices.items():
        if config[k] not in valid:
            raise ValueError(f'{k} must be one of {", ".join(map(repr, valid))}, got {config[k]!r}.')


def eval_variants(config):
    """One evaluation per L_test of test_vgf_steps (labels 'L0', 'L3', ...; main.py's step_list), the primary first."""
    primary = primary_test_steps(config)
    order = [primary] + [s for s in dict.fromkeys(l_test_values(config)) if s != primary]
    return [(f'L{s}', {'test_steps': s}) for s in order]


def networks(config, obs_dim, action_dim):
    """Critic ensemble and BC flow as the code's Value / ActorVectorField (utils/networks.py): `activation` MLPs,
    LayerNorm (critic only, by default) before the activation with ln_first."""
    act = dict(activation=config.activation, ln_first=config.ln_first)
    nets = {
        'critic': (
            Critic(config.value_hidden_dims, num_heads=config.num_critics, layer_norm=config.layer_norm, **act),
            ((obs_dim,), (action_dim,)),
        ),
        'bc_flow': (
            VectorField(config.actor_hidden_dims, action_dim, config.actor_layer_norm, **act),
            ((obs_dim,), (action_dim,), (1,)),
        ),
    }
    if config.grad_net:  # f(s, a) ~ grad_a Q(s, a), the size of the critic (official a_vgf.py)
        nets['grad_field'] = (
            VectorField(config.value_hidden_dims, action_dim, config.layer_norm, **act),
            ((obs_dim,), (action_dim,)),
        )
    return nets


def target_networks(config):
    return ('critic',)


# ---- the gradient flow ------------------------------------------------------------------------------------------
def rbf_kernel(x, y, bandwidth=0.0, bandwidth_grad=True):
    """k_ij = exp(-gamma ||x_i - y_j||^2) for x (..., N, d), y (..., M, d), as the code's rbf_kernel (agents/vgf.py):
    squared distances ||x||^2 + ||y||^2 - 2 x.y floored at 0; gamma = 1 / (1e-6 + 2 sigma^2) with the median heuristic
    sigma = sqrt(max(median_ij d2_ij / (2 log(N + 1)), 1e-12)) over all N*M entries (diagonal included), or
    gamma = 1 / bandwidth. `bandwidth_grad=False` stops the gradient through the median."""
    d2 = jnp.sum(x * x, -1)[..., :, None] + jnp.sum(y * y, -1)[..., None, :] - 2.0 * (x @ jnp.swapaxes(y, -1, -2))
    d2 = jnp.maximum(d2, 0.0)
    if bandwidth and bandwidth > 0:
        gamma = 1.0 / bandwidth
    else:
        med = jnp.median(d2 if bandwidth_grad else jax.lax.stop_gradient(d2), axis=(-2, -1))
        sigma = jnp.sqrt(jnp.maximum(med / (2.0 * jnp.log(x.shape[-2] + 1.0)), 1e-12))
        gamma = (1.0 / (1e-6 + 2.0 * sigma**2))[..., None, None]
    return jnp.exp(-gamma * d2)


def vgf_direction(particles, grads, alpha=1.0, maxent=True, bandwidth=0.0, bandwidth_grad=True):
    """phi(x_i) of Eq. (7) for particles (..., N, d) with value gradients grads_j = grad_a Q(s, a_j), as the code's
    SVGD_VGF.phi: k = rbf_kernel(x, sg(x)) (no gradient in the drive term),
    MaxEnt (default): (1/N) [sum_j k(x_i, a_j) grads_j / alpha - grad_{x_i} sum_{i', j} k(x_i', sg(a_j))],
    the second term the repulsion (with the median bandwidth's own dependence on x unless bandwidth_grad=False);
    w/o MaxEnt:       (1/N) sum_j k(x_i, a_j) grads_j."""
    fixed = jax.lax.stop_gradient(particles)

    def kernel_sum(x):
        k = rbf_kernel(x, fixed, bandwidth, bandwidth_grad)
        return k.sum(), k

    n = particles.shape[-2]
    if not maxent:
        return jax.lax.stop_gradient(rbf_kernel(particles, fixed, bandwidth)) @ grads / n
    neg_repulse, k = jax.grad(kernel_sum, has_aux=True)(particles)
    return (jax.lax.stop_gradient(k) @ grads / alpha - neg_repulse) / n


def run_flow(grad_fn, particles, num_steps: int, config):
    """L steps of Eq. (7) from `particles` (..., N, d), each followed by clipping to [-1, 1]. `grad_fn(particles)` gives
    grad_a Q at every particle. 'sgd': a <- a + eps * phi(a); 'adam': Adam with learning rate eps on the ascent
    direction phi, its moments started fresh for every flow (the code's SVGD_VGF.step, paper App. C)."""
    if num_steps == 0:
        return particles
    opt = optax.adam(config.vgf_step_size) if config.particle_optimizer == 'adam' else optax.sgd(config.vgf_step_size)
    kernel = dict(alpha=config.alpha, maxent=config.maxent, bandwidth=config.bandwidth or 0.0)
    kernel['bandwidth_grad'] = config.bandwidth_grad

    def body(carry, _):
        x, opt_state = carry
        phi = vgf_direction(x, grad_fn(x), **kernel)
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


def reward_scale(config):
    """The factor on the rewards: normalize_r_scale with normalize_r (the code's --normalize_r), else 1."""
    return config.normalize_r_scale if config.normalize_r else 1.0


def _particle_var(x):
    """Variance over the particles (ddof 1), averaged: the code's bc_flow_var / vgf_var (0 for N = 1)."""
    n = x.shape[-2]
    return jnp.var(x, axis=-2, ddof=1).mean() if n > 1 else jnp.zeros((), x.dtype)


# ---- losses and acting ------------------------------------------------------------------------------------------
def loss(learner, params, state, batch, rng):
    cfg = learner.config
    obs, actions = batch['observations'], batch['actions']
    next_rng, fm_rng = jax.random.split(rng)

    # Critic (Algorithm 1, lines 11-12): y = r + gamma * mask * select_j agg_k Q_target_k(s', a_j^{L_train}); the flow
    # uses the current critic (state.params), the target network evaluates the moved particles (the code).
    next_obs, init, moved = vgf_particles(
        learner, state.params, batch['next_observations'], next_rng, cfg.train_vgf_steps
    )
    next_q = aggregate_q(learner.apply('critic', state.target_params, next_obs, moved), cfg.q_agg, cfg.rho)
    next_q = next_q.mean(axis=-1) if cfg.train_select == 'mean' else next_q.max(axis=-1)
    target = batch['rewards'] * reward_scale(cfg) + td_discount(cfg) * batch['masks'] * next_q
    qs = learner.apply('critic', params, obs, actions)
    critic_loss = jnp.mean(
        apply_valid((qs - target) ** 2, batch.get('valid'), axis=1), axis=-1
    ).sum()  # summed over the heads, as the code's 'td' loss

    # BC flow policy mu_hat (Algorithm 1, line 10; flow matching).
    bc_loss = flow_matching_loss(
        lambda x, t: learner.apply('bc_flow', params, obs, x, t), actions, fm_rng, batch.get('valid')
    )
    info = {
        'critic/loss': critic_loss,
        'critic/q_mean': qs.mean(),
        'critic/q1_mean': qs[0].mean(),
        'critic/q_max': qs.max(),
        'critic/q_min': qs.min(),
        'actor/bc_flow_loss': bc_loss,
        'vgf/next_q': next_q.mean(),
        'vgf/bc_var': _particle_var(init),
        'vgf/var': _particle_var(moved),
        'vgf/bc_particle_std': jnp.std(init, axis=-2).mean(),
        'vgf/particle_std': jnp.std(moved, axis=-2).mean(),
        'vgf/move': jnp.linalg.norm(moved - init, axis=-1).mean(),
    }
    total = critic_loss + bc_loss

    if cfg.grad_net:  # min_f E_{(s,a)~D} ||f(s, a) - grad_a Q(s, a)||^2 (Sec. 3.2, "Practical consideration")
        score = jax.lax.stop_gradient(q_grads(learner, state.params, obs, actions))
        grad_loss = jnp.mean(
            apply_valid((learner.apply('grad_field', params, obs, actions) - score) ** 2, batch.get('valid'))
        )
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


PAPER = 'vgf'
PRESETS = {'vgf': paper_preset}
