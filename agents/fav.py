"""FAV (few-step alignment via sample-based variational inference): a one-step noise-to-action policy pi(s, z)
trained by amortized Stein variational gradient descent toward p_data(a|s) exp(beta Q(s, a)) (FAV Secs. 5.1-5.3,
App. A.2). FAV-Adaptive (`--agent=fav_adaptive`) sets the kernel temperature by Scott's rule from the data.

Per state: N particles x_i = clip(pi(s, z_i), -1, 1); Stein transport phi (Eq. (6)) with an RBF kernel of
temperature tau = 2 sigma^2 (Eq. (9)), the prior score estimated by a KDE over reference actions (Eqs. (15)-(16))
with its normalizer floored at 1e-6, the value gradient grad_a of the mean of the critic heads (autodiff, or the
zeroth-order estimate of App. C); the policy regresses onto stopgrad(x_i + phi(x_i)) (Eq. (7), mean squared error).
Offline and online the objective is the same; the reference actions are the batch's (dataset or replay-buffer)
actions. Defaults follow the released code (github.com/Jaewoopudding/FAV, fav-offrl/agents/fav.py); the paper-text
versions are switches (`unclamped_kde`, `unclipped_particles`, `grad_q_agg`, `adaptive_bandwidth='dataset'`).
"""

import jax
import jax.numpy as jnp
import numpy as np

from agents.common.kernels import kde_score, rbf
from agents.common.networks import VectorField
from agents.common.rl import aggregate_q, apply_valid, critic_networks, critic_td_loss, require_positive
from configs.common import base_config
from configs.presets import MIN_Q_AGG_TASKS, fav_table6, with_discount

ADAPTIVE_BANDWIDTH = ('off', 'dataset', 'batch')
REF_ACTIONS = ('own', 'batch')
Q_GRAD = ('autodiff', 'zeroth_order')
GRAD_Q_AGG = ('mean', 'min', 'pessimistic')
KDE_FLOOR = 1e-6  # floor of the KDE normalizer Z_p (released fav.py, get_drift)
SCOTT_STD_FLOOR = 1e-4  # floor of the action std in the per-batch Scott rule (released fav.py, get_adaptive_bandwidth)


def get_config(variant=None):
    if variant not in (None, 'adaptive'):
        raise ValueError(f"Unknown FAV variant {variant!r}; valid: None (FAV) or 'adaptive' (FAV-Adaptive).")
    adaptive = variant == 'adaptive'
    config = base_config('fav_adaptive' if adaptive else 'fav')
    # Tilt strength beta of the target p(a|s) exp(beta Q) (Eq. (1)). Default 10, the released get_config (for FAV
    # and FAV-Adaptive alike); per-task values of FAV Table 6 with `--preset=paper`.
    config.beta = 10.0
    # Kernel temperature tau = 2 sigma^2 of k(x, y) = exp(-||x - y||^2 / tau), shared by the SVGD kernel and the
    # KDE (Eq. (9)). Default 1, the released get_config. Ignored unless adaptive_bandwidth='off'.
    config.bandwidth = 1.0
    # 'off': use `bandwidth` (released bandwidth_method=fixed). 'batch' (FAV-Adaptive, the released
    # bandwidth_method=scott): Scott's rule tau = 2 h^2, h = n^(-1/(d_a+4)) * max(mean_j std(a_j), 1e-4) on each
    # training batch's actions, n = batch_size. 'dataset' (the paper's App. A.2 text): the same rule with the std of
    # the whole offline dataset, computed once (logged in final.json 'constants').
    config.adaptive_bandwidth = 'batch' if adaptive else 'off'
    config.num_particles = 8  # Particles N per state (App. A.2; released gen_multiplier).
    # Reference actions of the KDE prior score (Eqs. (15)-(16)): 'own' = the state's own batch action (M = 1, the
    # released code; the prior term is then a pull toward it); 'batch' = all B batch actions for every state (M = B;
    # the KDE of the batch's action marginal, the right reference only when the state carries no information, e.g. a
    # bandit).
    config.ref_actions = 'own'
    # Paper Eq. (6): the self-normalized KDE weights k / sum_m k, however far the references. Off (the released
    # code): the normalizer Z_p = sum_m k is floored at 1e-6, so far from every reference (Z_p < 1e-6) the pull
    # toward them fades and the prior score tends to -(2 / tau) x (a pull toward a = 0).
    config.unclamped_kde = False
    # Paper Eq. (7) on the raw policy outputs: particles not clipped (Q evaluated at clip(x)). Off (the released
    # code): x = clip(pi(s, z), -1, 1) before the drift and the loss, so out-of-range outputs get no gradient from
    # the loss, and grad Q is taken at x itself.
    config.unclipped_particles = False
    # Critic-head aggregation of the Q whose action gradient drives the transport: 'mean' (the released code, whatever
    # q_agg is), 'min' or 'pessimistic' (set it to q_agg for the gradient of the aggregated critic).
    config.grad_q_agg = 'mean'
    config.use_prior = True  # Ablation (App. F): the prior-alignment (KDE score) term.
    config.use_value = True  # Ablation (App. F): the reward-guidance term beta * grad_a Q.
    config.use_repulsive = True  # Ablation (App. F): the repulsive (diversity) term grad k.
    config.q_grad = 'autodiff'  # grad_a Q: 'autodiff' or 'zeroth_order' (two-point estimate, App. C Eq. (35)).
    config.zo_num_dirs = 16  # Zeroth-order directions K (App. C uses K = 16).
    config.zo_eta = 0.005  # Zeroth-order smoothing scale eta (App. C uses 0.005).
    return config


def paper_preset(env_name, variant=None):
    """FAV Table 6: (tau, beta) for FAV; beta for FAV-Adaptive (variant='adaptive'; its tau comes from the data);
    the discount, and q_agg = min where the released commands (fav-offrl/README.md) pass --agent.q_agg=min."""
    cols = {'beta': 'fav_adaptive_beta'} if variant == 'adaptive' else {'bandwidth': 'fav_tau', 'beta': 'fav_beta'}
    values = with_discount(env_name, fav_table6(env_name, cols))
    if env_name.startswith(MIN_Q_AGG_TASKS):
        values['q_agg'] = 'min'
    return values


def validate(config):
    require_positive(config, 'beta', 'bandwidth', 'num_particles', 'zo_num_dirs', 'zo_eta')
    choices = (
        ('adaptive_bandwidth', ADAPTIVE_BANDWIDTH),
        ('ref_actions', REF_ACTIONS),
        ('q_grad', Q_GRAD),
        ('grad_q_agg', GRAD_Q_AGG),
    )
    for key, valid in choices:
        if config[key] not in valid:
            raise ValueError(f'{key} must be one of {", ".join(map(repr, valid))}, got {config[key]!r}.')
    if config.ref_actions == 'batch' and config.horizon_length > 1:
        raise ValueError(
            "ref_actions='batch' (every batch chunk a KDE reference of every state) is for bandits; with "
            "horizon_length > 1 use ref_actions='own'."
        )


def networks(config, obs_dim, action_dim):
    actor = VectorField(config.actor_hidden_dims, action_dim, config.actor_layer_norm)  # pi(s, z), no times
    return {**critic_networks(config, obs_dim, action_dim), 'actor': (actor, ((obs_dim,), (action_dim,)))}


def target_networks(config):
    return ('critic',)


# ---- FAV math (pure functions over arrays) -------------------------------------------------------------------------
def scott_bandwidth(actions, n, std_floor=0.0):
    """FAV-Adaptive (App. A.2): tau = 2 h^2 with Scott's rule h = n^(-1/(d_a+4)) * max(mean_j Std(a_j), std_floor),
    actions (num, d_a). Works on numpy and jax arrays (numpy stays float64 when std_floor = 0)."""
    std = actions.std(axis=0).mean()
    if std_floor:
        std = jnp.maximum(std, std_floor)
    h = n ** (-1.0 / (actions.shape[-1] + 4)) * std
    return 2.0 * h**2


def clamped_kde_score(x, refs, tau, floor=KDE_FLOOR):
    """The KDE prior score of the released code (fav-offrl/agents/fav.py, get_drift): (2 / tau) (sum_m k_m r_m / Z_p
    - x), k_m = exp(-||x - r_m||^2 / tau), Z_p = max(sum_m k_m, floor). Where Z_p >= floor it is the
    self-normalized score of Eqs. (15)-(16) (`kernels.kde_score`); far from every reference the pull toward them
    fades and the score tends to -(2 / tau) x. x (..., N, d), refs (..., M, d) -> (..., N, d)."""
    k = rbf(x, refs, tau)  # (..., N, M), not log-sum-exp stabilized (as released)
    z = jnp.maximum(k.sum(-1, keepdims=True), floor)
    return (2.0 / tau) * ((k @ refs) / z - x)


def prior_score(config, x, refs, tau):
    """The prior-alignment score: released clamped KDE, or the paper's self-normalized one (`unclamped_kde`)."""
    return kde_score(x, refs, tau) if config.unclamped_kde else clamped_kde_score(x, refs, tau)


def stein_transport(x, prior_score, value_grad, tau, beta, repulsive=True):
    """Stein transport of Eq. (6): phi(x_i) = (1/N) sum_j k(x_j, x_i) [prior_score(x_j) + beta * value_grad(x_j)
    + (x_i - x_j) / sigma^2], sigma^2 = tau / 2. x, prior_score, value_grad: (..., N, d); a term given as None (or
    repulsive=False) is left out (App. F ablations)."""
    k = rbf(x, x, tau)  # (..., N, N), symmetric
    phi = jnp.zeros_like(x)
    if prior_score is not None:
        phi = phi + k @ prior_score
    if value_grad is not None:
        phi = phi + beta * (k @ value_grad)
    if repulsive:  # sum_j k(x_j, x_i) (x_i - x_j) / sigma^2 = grad_{x_j} k(x_j, x_i) summed over j
        phi = phi + (2.0 / tau) * (k.sum(-1, keepdims=True) * x - k @ x)
    return phi / x.shape[-2]


def zeroth_order_grad(f, x, rng, num_dirs, eta):
    """Two-point zeroth-order gradient (App. C Eq. (35)): (1/K) sum_k (f(x + eta u_k) - f(x - eta u_k)) / (2 eta)
    u_k, u_k ~ N(0, I). f maps (..., K, d) -> (..., K); x (..., d) -> (..., d)."""
    u = jax.random.normal(rng, (*x.shape[:-1], num_dirs, x.shape[-1]), x.dtype)
    xk = x[..., None, :]
    df = (f(xk + eta * u) - f(xk - eta * u)) / (2.0 * eta)
    return jnp.mean(df[..., None] * u, axis=-2)


# ---- agent -----------------------------------------------------------------------------------------------------------
def q_values(learner, params, observations, actions):
    """Q(s, a) aggregated over the critic heads by config.grad_q_agg (the released code: their mean, whatever q_agg
    is) for actions (B, ..., d) of observations (B, obs_dim): the Q whose action gradient drives the drift. The
    particles are already clipped (released get_drift differentiates Q at them as they are: a particle on the bound
    gets the full one-sided gradient, where jnp.clip's derivative there would be 1/2); with `unclipped_particles`,
    Q(s, clip(a))."""
    cfg = learner.config
    shape = (observations.shape[0],) + (1,) * (actions.ndim - 2) + (observations.shape[-1],)
    obs = jnp.broadcast_to(observations.reshape(shape), (*actions.shape[:-1], observations.shape[-1]))
    qs = learner.apply('critic', params, obs, jnp.clip(actions, -1.0, 1.0) if cfg.unclipped_particles else actions)
    return aggregate_q(qs, cfg.grad_q_agg, cfg.rho)


def bandwidth(learner, batch):
    """The kernel temperature tau for this batch (fixed, Scott's rule on the batch, or on the dataset)."""
    cfg = learner.config
    if cfg.adaptive_bandwidth == 'dataset':
        if 'bandwidth' not in learner.consts:
            raise ValueError("adaptive_bandwidth='dataset' needs the learner constants from fav.constants().")
        return learner.consts['bandwidth']
    if cfg.adaptive_bandwidth == 'batch':  # released get_adaptive_bandwidth(batch['actions'], 'scott')
        return scott_bandwidth(batch['actions'], batch['actions'].shape[0], SCOTT_STD_FLOOR)
    return cfg.bandwidth


def reference_actions(config, actions):
    """(B, M, d) reference actions per state: the own batch action (M = 1) or the whole batch (M = B, broadcast)."""
    return actions[:, None, :] if config.ref_actions == 'own' else actions[None]


def policy_particles(learner, params, observations, rng):
    """N raw (unclipped) policy outputs pi(s, z_i), z_i ~ N(0, I), per state: (B, N, d)."""
    b, n = observations.shape[0], learner.config.num_particles
    z = jax.random.normal(rng, (b, n, learner.action_dim))
    return learner.apply('actor', params, jnp.repeat(observations[:, None], n, axis=1), z)


def actor_loss(learner, params, observations, references, rng, tau, q_fn, valid=None):
    """Eq. (7) as released (Algorithm 1's mse_loss): mean over states, particles and action dimensions of
    (stopgrad(x_i + phi(x_i)) - x_i)^2, x_i = clip(pi(s, z_i), -1, 1) (unclipped with `unclipped_particles`).
    references: (B or 1, M, d) reference actions; q_fn(a): Q of actions (B, ..., d) of these states, without
    gradient to the critic (built from `state.params` by `loss`). `valid` (horizon_length > 1): states whose own
    reference chunk runs past an episode end count as zeros in the mean."""
    cfg = learner.config
    noise_rng, zo_rng = jax.random.split(rng)
    raw = policy_particles(learner, params, observations, noise_rng)
    x = raw if cfg.unclipped_particles else jnp.clip(raw, -1.0, 1.0)  # released: clipped before drift and loss
    xs = jax.lax.stop_gradient(x)
    prior = prior_score(cfg, xs, references, tau) if cfg.use_prior else None
    if cfg.use_value and cfg.q_grad == 'autodiff':
        q, grad_q = jax.value_and_grad(lambda a: q_fn(a).sum())(xs)
        q = q / (xs.shape[0] * xs.shape[1])
    else:
        q = q_fn(xs).mean()
        grad_q = zeroth_order_grad(q_fn, xs, zo_rng, cfg.zo_num_dirs, cfg.zo_eta) if cfg.use_value else None
    phi = stein_transport(xs, prior, grad_q, tau, cfg.beta, cfg.use_repulsive)
    loss = jnp.mean(apply_valid((jax.lax.stop_gradient(xs + phi) - x) ** 2, valid))

    def norm(v):
        return jnp.mean(jnp.linalg.norm(v, axis=-1)) if v is not None else jnp.zeros(())

    info = {
        'actor/loss': loss,
        'actor/q': q,
        'actor/phi_norm': norm(phi),
        'actor/prior_norm': norm(prior),
        'actor/grad_q_norm': norm(grad_q),
        'actor/bandwidth': jnp.asarray(tau, jnp.float32),
        'actor/abs_mean': jnp.mean(jnp.abs(xs)),
        'actor/particle_std': jnp.mean(jnp.std(xs, axis=1)),
        'actor/out_of_range': jnp.mean(jnp.abs(jax.lax.stop_gradient(raw)) > 1.0),
    }
    return loss, info


def loss(learner, params, state, batch, rng):
    next_rng, actor_rng = jax.random.split(rng)
    # Critic: y = r + gamma (1 - d) agg_k Q_target_k(s', a'), a' ~ pi(s'), agg = q_agg (App. A.2; released critic_loss).
    next_actions = sample_actions(learner, state.params, batch['next_observations'], next_rng)
    critic_loss, info = critic_td_loss(learner, params, state, batch, next_actions)
    obs = batch['observations']
    refs = reference_actions(learner.config, batch['actions'])

    def q_fn(a):  # the current critic; no gradient reaches it from the actor loss
        return q_values(learner, state.params, obs, a)

    a_loss, a_info = actor_loss(
        learner, params, obs, refs, actor_rng, bandwidth(learner, batch), q_fn, batch.get('valid')
    )
    info.update(a_info)
    if learner.config.adaptive_bandwidth == 'batch':  # the released code logs it as actor/bandwidth_std
        info['actor/action_std'] = batch['actions'].std(axis=0).mean()
    return critic_loss + a_loss, info


def constants(config, dataset):
    """FAV-Adaptive: Scott's-rule temperature from the whole offline dataset's action std, n = batch_size."""
    if config.adaptive_bandwidth != 'dataset':
        return {}
    actions = np.asarray(dataset['actions'], np.float64)
    h = config.horizon_length
    if h > 1:  # the flattened chunks a_{t:t+h} (N - h + 1, h * d), as the policy sees them
        actions = np.lib.stride_tricks.sliding_window_view(actions, h, axis=0).transpose(0, 2, 1)
        actions = actions.reshape(len(actions), -1)
    tau = float(scott_bandwidth(actions, config.batch_size))
    if not tau > 0:
        raise ValueError(
            f'Scott-rule bandwidth is {tau} (the dataset actions have zero spread); set '
            '--agent.adaptive_bandwidth=off and a positive --agent.bandwidth.'
        )
    return {'bandwidth': tau, 'action_std': float(actions.std(axis=0).mean()), 'scott_n': config.batch_size}


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """a = clip(pi(s, z), -1, 1), z ~ N(0, I): the stochastic policy (fresh noise also at evaluation, as the released
    sample_actions, which ignores the temperature)."""
    noises = jax.random.normal(rng, (*observations.shape[:-1], learner.action_dim))
    return jnp.clip(learner.apply('actor', params, observations, noises), -1.0, 1.0)


PAPER = 'fav'
PRESETS = {'fav': paper_preset}
