"""FAV (few-step alignment via sample-based variational inference): a one-step noise-to-action policy pi(s, z)
trained by amortized Stein variational gradient descent toward p_data(a|s) exp(beta Q(s, a)) (FAV Secs. 5.1-5.3,
App. A.2). FAV-Adaptive (`--agent=fav_adaptive`) sets the kernel temperature by Scott's rule from the data.

Per state: N particles x_i = pi(s, z_i); Stein transport phi (Eq. (6)) with an RBF kernel of temperature
tau = 2 sigma^2 (Eq. (9)), the prior score estimated by a KDE over reference actions (Eqs. (15)-(16)), the value
gradient grad_a Q (autodiff, or the zeroth-order estimate of App. C); the policy regresses onto
stopgrad(x_i + phi(x_i)) (Eq. (7)). Offline and online the objective is the same; the reference actions are the
batch's (dataset or replay-buffer) actions.
"""

import jax
import jax.numpy as jnp
import numpy as np

from agents.common.kernels import kde_score, rbf
from agents.common.networks import VectorField
from agents.common.rl import aggregate_q, critic_networks, critic_td_loss, require_positive
from configs.common import base_config
from configs.presets import fav_table6, with_discount

ADAPTIVE_BANDWIDTH = ('off', 'dataset', 'batch')
REF_ACTIONS = ('own', 'batch')
Q_GRAD = ('autodiff', 'zeroth_order')


def get_config(variant=None):
    if variant not in (None, 'adaptive'):
        raise ValueError(f"Unknown FAV variant {variant!r}; valid: None (FAV) or 'adaptive' (FAV-Adaptive).")
    adaptive = variant == 'adaptive'
    config = base_config('fav_adaptive' if adaptive else 'fav')
    # Tilt strength beta of the target p(a|s) exp(beta Q) (Eq. (1)). Defaults: the most common value in FAV
    # Table 6 (FAV: 1, FAV-Adaptive: 2); per-task values with `--preset=paper`.
    config.beta = 2.0 if adaptive else 1.0
    # Kernel temperature tau = 2 sigma^2 of k(x, y) = exp(-||x - y||^2 / tau), shared by the SVGD kernel and the
    # KDE (Eq. (9)). Default 0.5, the most common value in FAV Table 6. Ignored unless adaptive_bandwidth='off'.
    config.bandwidth = 0.5
    # 'off': use `bandwidth`. 'dataset' (FAV-Adaptive, App. A.2): Scott's rule tau = 2 h^2, h = n^(-1/(d_a+4))
    # * mean_j std(a_j) over the whole offline dataset, n = batch_size, computed once (logged in final.json
    # 'constants'). 'batch': the same rule with the std of each training batch's actions (the authors' code).
    config.adaptive_bandwidth = 'dataset' if adaptive else 'off'
    config.num_particles = 8  # Particles N per state (App. A.2).
    # Reference actions of the KDE prior score (Eqs. (15)-(16)): 'own' = the state's own batch action (M = 1; the
    # prior term is then a pull toward it); 'batch' = all B batch actions for every state (M = B; the KDE of the
    # batch's action marginal, the right reference only when the state carries no information, e.g. a bandit).
    config.ref_actions = 'own'
    config.use_prior = True  # Ablation (App. F): the prior-alignment (KDE score) term.
    config.use_value = True  # Ablation (App. F): the reward-guidance term beta * grad_a Q.
    config.use_repulsive = True  # Ablation (App. F): the repulsive (diversity) term grad k.
    config.q_grad = 'autodiff'  # grad_a Q: 'autodiff' or 'zeroth_order' (two-point estimate, App. C Eq. (35)).
    config.zo_num_dirs = 16  # Zeroth-order directions K (App. C uses K = 16).
    config.zo_eta = 0.005  # Zeroth-order smoothing scale eta (App. C uses 0.005).
    return config


def paper_preset(env_name, variant=None):
    """FAV Table 6: (tau, beta) for FAV; beta for FAV-Adaptive (variant='adaptive'; its tau comes from the data)."""
    cols = {'beta': 'fav_adaptive_beta'} if variant == 'adaptive' else {'bandwidth': 'fav_tau', 'beta': 'fav_beta'}
    return with_discount(env_name, fav_table6(env_name, cols))


def validate(config):
    require_positive(config, 'beta', 'bandwidth', 'num_particles', 'zo_num_dirs', 'zo_eta')
    for key, valid in (('adaptive_bandwidth', ADAPTIVE_BANDWIDTH), ('ref_actions', REF_ACTIONS), ('q_grad', Q_GRAD)):
        if config[key] not in valid:
            raise ValueError(f'{key} must be one of {", ".join(map(repr, valid))}, got {config[key]!r}.')


def networks(config, obs_dim, action_dim):
    actor = VectorField(config.actor_hidden_dims, action_dim, config.actor_layer_norm)  # pi(s, z), no times
    return {**critic_networks(config, obs_dim, action_dim), 'actor': (actor, ((obs_dim,), (action_dim,)))}


def target_networks(config):
    return ('critic',)


# ---- FAV math (pure functions over arrays) -------------------------------------------------------------------------
def scott_bandwidth(actions, n):
    """FAV-Adaptive (App. A.2): tau = 2 h^2 with Scott's rule h = n^(-1/(d_a+4)) * mean_j Std(a_j), actions
    (num, d_a). Works on numpy and jax arrays."""
    h = n ** (-1.0 / (actions.shape[-1] + 4)) * actions.std(axis=0).mean()
    return 2.0 * h**2


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
    """Aggregated Q(s, clip(a)) (config.q_agg over heads) for actions (B, ..., d) of observations (B, obs_dim)."""
    shape = (observations.shape[0],) + (1,) * (actions.ndim - 2) + (observations.shape[-1],)
    obs = jnp.broadcast_to(observations.reshape(shape), (*actions.shape[:-1], observations.shape[-1]))
    qs = learner.apply('critic', params, obs, jnp.clip(actions, -1.0, 1.0))
    return aggregate_q(qs, learner.config.q_agg, learner.config.rho)


def bandwidth(learner, batch):
    """The kernel temperature tau for this batch (fixed, Scott's rule on the dataset, or on the batch)."""
    cfg = learner.config
    if cfg.adaptive_bandwidth == 'dataset':
        if 'bandwidth' not in learner.consts:
            raise ValueError("adaptive_bandwidth='dataset' needs the learner constants from fav.constants().")
        return learner.consts['bandwidth']
    if cfg.adaptive_bandwidth == 'batch':
        return jnp.maximum(scott_bandwidth(batch['actions'], batch['actions'].shape[0]), 1e-6)
    return cfg.bandwidth


def reference_actions(config, actions):
    """(B, M, d) reference actions per state: the own batch action (M = 1) or the whole batch (M = B, broadcast)."""
    return actions[:, None, :] if config.ref_actions == 'own' else actions[None]


def actor_loss(learner, params, observations, references, rng, tau, q_fn):
    """Eq. (7): mean over states and particles of ||stopgrad(x_i + phi(x_i)) - x_i||^2, x_i = pi(s, z_i).
    references: (B or 1, M, d) reference actions; q_fn(a): Q of actions (B, ..., d) of these states, without
    gradient to the critic (built from `state.params` by `loss`)."""
    cfg = learner.config
    noise_rng, zo_rng = jax.random.split(rng)
    b, n = observations.shape[0], cfg.num_particles
    z = jax.random.normal(noise_rng, (b, n, learner.action_dim))
    x = learner.apply('actor', params, jnp.repeat(observations[:, None], n, axis=1), z)  # (B, N, d), unclipped
    xs = jax.lax.stop_gradient(x)
    prior = kde_score(xs, references, tau) if cfg.use_prior else None
    if cfg.use_value and cfg.q_grad == 'autodiff':
        q, grad_q = jax.value_and_grad(lambda a: q_fn(a).sum())(xs)
        q = q / (b * n)
    else:
        q = q_fn(xs).mean()
        grad_q = zeroth_order_grad(q_fn, xs, zo_rng, cfg.zo_num_dirs, cfg.zo_eta) if cfg.use_value else None
    phi = stein_transport(xs, prior, grad_q, tau, cfg.beta, cfg.use_repulsive)
    loss = jnp.mean(jnp.sum((jax.lax.stop_gradient(xs + phi) - x) ** 2, axis=-1))

    def norm(v):
        return jnp.mean(jnp.linalg.norm(v, axis=-1)) if v is not None else jnp.zeros(())

    info = {
        'actor/loss': loss,
        'actor/q': q,
        'actor/phi_norm': norm(phi),
        'actor/prior_norm': norm(prior),
        'actor/grad_q_norm': norm(grad_q),
        'actor/bandwidth': jnp.asarray(tau, jnp.float32),
        'actor/particle_std': jnp.mean(jnp.std(xs, axis=1)),
        'actor/out_of_range': jnp.mean(jnp.abs(xs) > 1.0),
    }
    return loss, info


def loss(learner, params, state, batch, rng):
    next_rng, actor_rng = jax.random.split(rng)
    # Critic: y = r + gamma (1 - d) agg_k Q_target_k(s', a'), a' ~ pi(s') (App. A.2).
    next_actions = sample_actions(learner, state.params, batch['next_observations'], next_rng)
    critic_loss, info = critic_td_loss(learner, params, state, batch, next_actions)
    obs = batch['observations']
    refs = reference_actions(learner.config, batch['actions'])

    def q_fn(a):  # the current critic; no gradient reaches it from the actor loss
        return q_values(learner, state.params, obs, a)

    a_loss, a_info = actor_loss(learner, params, obs, refs, actor_rng, bandwidth(learner, batch), q_fn)
    info.update(a_info)
    return critic_loss + a_loss, info


def constants(config, dataset):
    """FAV-Adaptive: Scott's-rule temperature from the whole offline dataset's action std, n = batch_size."""
    if config.adaptive_bandwidth != 'dataset':
        return {}
    actions = np.asarray(dataset['actions'], np.float64)
    tau = float(scott_bandwidth(actions, config.batch_size))
    if not tau > 0:
        raise ValueError(
            f'Scott-rule bandwidth is {tau} (the dataset actions have zero spread); set '
            '--agent.adaptive_bandwidth=off and a positive --agent.bandwidth.'
        )
    return {'bandwidth': tau, 'action_std': float(actions.std(axis=0).mean()), 'scott_n': config.batch_size}


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """a = clip(pi(s, z), -1, 1), z ~ N(0, I): the stochastic policy (fresh noise also at evaluation, as FQL)."""
    noises = jax.random.normal(rng, (*observations.shape[:-1], learner.action_dim))
    return jnp.clip(learner.apply('actor', params, observations, noises), -1.0, 1.0)
