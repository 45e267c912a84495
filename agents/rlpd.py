"""RLPD (Ball, Smith, Kostrikov, Levine 2023): soft actor-critic trained online from scratch on batches drawn half from
the offline data and half from the online replay buffer, with a LayerNorm critic ensemble and a learned entropy
temperature.

Defaults: the run behind FAV Table 12's RLPD row. The FAV paper reran its offline-to-online baselines "on the official
codebase of FQL" (App. A); the FAV repository (Jaewoopudding/FAV @ 5fd6c80, fav-offrl/) has agents/sac.py and
utils/networks.py byte-identical to seohongpark/fql's, keeps FQL's `--balanced_sampling` in main.py, and gives no
RLPD command of its own. So RLPD is the FQL README's command (`--offline_steps=0 --online_steps=1000000
--agent=agents/sac.py --balanced_sampling=1`, plus discount 0.995 on the long-horizon domains), i.e. the FQL code
base's sac.py defaults:
  - critic: 2 LayerNorm heads (Value(num_ensembles=2), hard-coded), target r + gamma m min_k Q'_k(s', a'), a' ~ pi(s')
    from the current actor, no entropy term in the target (backup_entropy=False); Polyak targets (tau 0.005, toward
    the critic before the step) of the critic only;
  - actor: tanh-squashed Gaussian with a state-dependent log std (GELU MLP; mean and log-std layers at variance scale
    1e-2, actor_fc_scale; log std clipped to [-5, 2]), loss E[alpha log pi(a|s) - mean_k Q_k(s, a)], a ~ pi(s)
    reparameterized, alpha held fixed;
  - temperature: alpha = exp(log alpha), log alpha a parameter (LogParam, initial alpha 1), loss alpha (H - H_target)
    with H = -E[log pi] held fixed and H_target = -0.5 dim(A);
  - one Adam (lr 3e-4) over all three (critic + actor + temperature losses summed); 50/50 offline / online batches
    (main.py balanced_sampling: `mix_offline=0.5`); one gradient step per environment step (utd_ratio=1);
    exploration at temperature 1, evaluation at temperature 0: tanh(mean).
The log-density of a = tanh(x) is computed from the pre-tanh sample x, log N(x) - sum 2 (log 2 - x - softplus(-2x)),
as distrax's Transformed.sample_and_log_prob with its Tanh bijector (sac.py). The QAM and RLPD codes call TFP's
log_prob(sample), which inverts the float32 tanh: the same value, except where tanh(x) rounds to +-1 (there theirs is
not finite).

Switches (off by default) reach the other released versions:
  - the QAM code base's agents/rlpd.py as its experiments/reproduce_rlpd.py runs it (`--preset=qam`): K = 10 heads
    with mean - rho std (rho 0.5; 0 on humanoidmaze) both in the target and in the actor's Q (`actor_q_agg`), its
    TanhNormal (log std clipped to [-20, 2], `log_std_min`; output layers at variance scale 1, `actor_fc_scale`), the
    per-domain BC term -bc_alpha E[valid log pi(a_data|s)] (`bc_alpha`), action chunks of 5 on manipulation, sampled
    actions at evaluation (`stochastic_eval`), and its main.py's first start_training = 5000 online steps of uniform
    random actions without gradient steps (`start_training`, `random_before_training`);
  - the RLPD paper's code (ikostrikov/rlpd @ c90fd4b: configs/rlpd_config.py over sac_config.py / td_config.py,
    rlpd/agents/sac/sac_learner.py, README commands): `--agent.num_critics=10 --agent.num_min_qs=2
    --agent.backup_entropy=True --agent.utd_ratio=20 --agent.utd_actor_once=True --agent.target_from_old_params=False
    --agent.log_std_min=-20 --agent.actor_fc_scale=1 --agent.activation=relu --agent.ln_first=True
    --agent.actor_hidden_dims=(256,256) --agent.value_hidden_dims=(256,256)` (its antmaze command: backup_entropy
    False, num_min_qs 1, hidden (256, 256, 256)): the target's min over a random subset of 2 heads (REDQ's M), the
    entropy term in the target, 20 critic steps per environment step, each on its own half-offline batch, then one
    actor and one temperature step, each network with its own Adam (the trainer's frozen_on_critic_steps), Polyak
    targets toward the updated critic, ReLU MLPs with LayerNorm before the activation in the critic. Left different:
    its actor step uses the critic after the last of the 20 critic steps (here: the one before it, as the two are one
    gradient step). Its README's commands act at random without updates for the first 5000 steps (`--start_training
    5000`; train_finetuning.py counts steps from 0, so the first update comes at step 5001): add
    `--agent.start_training=5001 --agent.random_before_training=True`.
"""

import jax
import jax.numpy as jnp

from agents.common.networks import (
    ACTIVATIONS,
    Critic,
    GaussianActor,
    LogScalar,
    gaussian_log_prob,
    tanh_gaussian,
    tanh_log_det,
)
from agents.common.rl import aggregate_q, apply_valid, td_discount
from configs.common import base_config
from configs.presets import PresetError, fav_table6, qam_domain, qam_protocol, with_discount


def get_config():
    config = base_config('rlpd')
    # Critic: the FQL code base's sac.py (2 heads, min in the target; LayerNorm and 4 x 512 GELU from base_config).
    config.num_critics = 2  # Critic heads K (sac.py: 2, hard-coded; RLPD's code and QAM's rlpd.py: 10).
    config.q_agg = 'min'  # Target aggregation over the heads (sac.py q_agg='min'; QAM's rlpd.py: 'pessimistic').
    # Q in the actor loss: 'mean' over the heads (sac.py, RLPD's code); QAM's rlpd.py: 'pessimistic' (mean - rho std).
    config.actor_q_agg = 'mean'
    # Target from a random subset of this many target heads (drawn per gradient step, without replacement), aggregated
    # by q_agg: RLPD's code (REDQ's M; rlpd_config num_min_qs=2, 1 in its antmaze command). 0: all heads (sac.py).
    config.num_min_qs = 0
    # Subtract gamma m alpha log pi(a'|s') in the target (sac.py: False; RLPD's sac_config: True, False in its antmaze
    # and Adroit commands).
    config.backup_entropy = False
    config.target_entropy_multiplier = 0.5  # Target entropy = -multiplier * dim(A) (A: the flattened chunk).
    config.init_temp = 1.0  # Initial entropy temperature alpha (LogParam init 1).
    config.log_std_min = -5.0  # Lower clip of the actor's log std (sac.py's Actor: -5; QAM's / RLPD's TanhNormal: -20).
    # Init variance scale (fan_avg, uniform) of the mean and log-std layers (sac.py: 0.01; the TanhNormal's xavier: 1).
    config.actor_fc_scale = 0.01
    config.bc_alpha = 0.0  # Weight of -E[log pi(a_data|s)] in the actor loss (QAM's rlpd.py; 0 in sac.py).
    # Evaluation: False = tanh(mean) (the FQL code base's evaluate, temperature 0); True = sampled, as QAM's evaluate
    # (its rlpd.py sample_actions has no temperature).
    config.stochastic_eval = False
    config.mix_offline = 0.5  # Online batches half offline, half online (the command's --balanced_sampling=1).
    # Gradient steps per environment step online (agents/common/trainer.py add_and_train), each on a fresh batch: 1 in
    # the FQL / FAV / QAM runs; 20 in the RLPD code's README commands on state observations.
    config.utd_ratio = 1
    # With utd_ratio > 1: only every utd_ratio-th gradient step (the last of each environment step's, counted from the
    # first gradient step, offline ones included) also updates the actor and the temperature; the others are
    # critic-only and leave the actor, the temperature and their Adam states untouched, each network then having its
    # own Adam (RLPD's code: utd critic updates, then one actor and one temperature update, three optimizers).
    # False: every step is a full update (QAM's main.py batch_update).
    config.utd_actor_once = False
    # MLP activation of the critic and the actor ('gelu': the FQL and QAM codes; 'relu': RLPD's code) and the place of
    # the critic's LayerNorm: after the activation (False, FQL / QAM) or before it (True, RLPD's code).
    config.activation = 'gelu'
    config.ln_first = False
    return config


def validate(config):
    if config.actor_q_agg not in ('mean', 'min', 'pessimistic'):
        raise ValueError(f"actor_q_agg must be 'mean', 'min' or 'pessimistic', got {config.actor_q_agg!r}.")
    if not (isinstance(config.num_min_qs, int) and 0 <= config.num_min_qs <= config.num_critics):
        raise ValueError(
            f'num_min_qs must be an integer in [0, num_critics = {config.num_critics}] (0: all heads), got '
            f'{config.num_min_qs!r}.'
        )
    if config.num_min_qs == 1 and config.q_agg == 'pessimistic':
        raise ValueError('num_min_qs=1 leaves one target head, whose std is 0: use q_agg=min or mean.')
    if not config.init_temp > 0:
        raise ValueError(f'init_temp (initial entropy temperature) must be positive, got {config.init_temp}.')
    if not abs(config.target_entropy_multiplier) < float('inf'):
        raise ValueError(f'target_entropy_multiplier must be finite, got {config.target_entropy_multiplier}.')
    if not config.log_std_min < 2.0:
        raise ValueError(f'log_std_min must be below the upper clip 2, got {config.log_std_min}.')
    if not config.actor_fc_scale > 0:
        raise ValueError(f'actor_fc_scale must be positive, got {config.actor_fc_scale}.')
    if config.activation not in ACTIVATIONS:
        raise ValueError(f'activation must be one of {sorted(ACTIVATIONS)}, got {config.activation!r}.')
    if not config.bc_alpha >= 0:
        raise ValueError(f'bc_alpha must be non-negative, got {config.bc_alpha}.')


def networks(config, obs_dim, action_dim):
    actor = GaussianActor(
        config.actor_hidden_dims,
        action_dim,
        config.actor_layer_norm,
        const_std=False,
        tanh_mean=False,
        final_fc_init_scale=config.actor_fc_scale,
        state_dependent_std=True,
        log_std_min=config.log_std_min,
        activation=config.activation,
    )
    critic = Critic(
        config.value_hidden_dims,
        num_heads=config.num_critics,
        layer_norm=config.layer_norm,
        activation=config.activation,
        ln_first=config.ln_first,
    )
    return {
        'critic': (critic, ((obs_dim,), (action_dim,))),
        'actor': (actor, ((obs_dim,),)),
        'alpha': (LogScalar(config.init_temp), ()),  # log of the entropy temperature (the released `alpha` LogParam)
    }


def target_networks(config):
    return ('critic',)


def _actor_once(config):
    return bool(config.utd_actor_once) and config.utd_ratio > 1


def actor_step(config, step):
    """RLPD's code with utd_ratio > 1 (`utd_actor_once`): the actor and the temperature move on the last of every
    utd_ratio gradient steps; otherwise on every step (a Python True: the trainer compiles no branch)."""
    if not _actor_once(config):
        return True
    return (step + 1) % config.utd_ratio == 0


def frozen_on_critic_steps(config):
    """With `utd_actor_once`, the actor and the temperature have their own Adam, which critic-only steps do not
    advance (RLPD's code's separate optimizers); otherwise one Adam over everything (sac.py)."""
    return ('actor', 'alpha') if _actor_once(config) else ()


def target_entropy(learner):
    return -learner.config.target_entropy_multiplier * learner.action_dim


def loss(learner, params, state, batch, rng, actor=True):
    cfg = learner.config
    obs, actions, valid = batch['observations'], batch['actions'], batch.get('valid')
    next_rng, subset_rng, actor_rng = jax.random.split(rng, 3)
    temp = jnp.exp(learner.apply('alpha', state.params))  # the current temperature, no gradient

    # Critic: a' ~ pi(s') from the current actor; target heads (or a random subset of them) aggregated by q_agg.
    next_actions, next_log_probs = tanh_gaussian(
        *learner.apply('actor', state.params, batch['next_observations']), next_rng
    )
    next_qs = learner.apply('critic', state.target_params, batch['next_observations'], next_actions)
    if cfg.num_min_qs:
        heads = jax.random.choice(subset_rng, cfg.num_critics, (cfg.num_min_qs,), replace=False)
        next_qs = next_qs[heads]
    next_q = aggregate_q(next_qs, cfg.q_agg, cfg.rho)
    discount = td_discount(cfg)
    target = batch['rewards'] + discount * batch['masks'] * next_q
    if cfg.backup_entropy:
        target = target - discount * batch['masks'] * temp * next_log_probs
    target = jax.lax.stop_gradient(target)
    qs = learner.apply('critic', params, obs, actions)
    critic_loss = jnp.mean(apply_valid((qs - target) ** 2, valid, axis=1))
    info = {'critic/loss': critic_loss, 'critic/q_mean': qs.mean(), 'critic/q_max': qs.max(), 'critic/q_min': qs.min()}
    if not actor:  # a critic-only step (utd_actor_once)
        return critic_loss, info

    # Actor: E[alpha log pi(a|s) - Q(s, a)], a ~ pi(s) reparameterized, through the current critic (no gradient to it).
    means, log_stds = learner.apply('actor', params, obs)
    pi, log_probs = tanh_gaussian(means, log_stds, actor_rng)
    q = aggregate_q(learner.apply('critic', state.params, obs, pi), cfg.actor_q_agg, cfg.rho)
    actor_loss = jnp.mean(log_probs * temp - q)
    # Temperature: alpha (H - H_target) with the entropy estimate H held fixed.
    entropy = -jax.lax.stop_gradient(log_probs).mean()
    alpha = jnp.exp(learner.apply('alpha', params))
    alpha_loss = alpha * (entropy - target_entropy(learner))
    total = critic_loss + actor_loss + alpha_loss
    info.update(
        {
            'actor/loss': actor_loss,
            'actor/alpha_loss': alpha_loss,
            'actor/alpha': alpha,
            'actor/entropy': -log_probs.mean(),
            'actor/std': jnp.exp(log_stds).mean(),
            'actor/q': q.mean(),
        }
    )
    if cfg.bc_alpha > 0:  # QAM's rlpd.py: -bc_alpha E[log pi(clip(a_data, +-(1 - 1e-5)) | s)] (chunks past an end: 0)
        x = jnp.arctanh(jnp.clip(actions, -1 + 1e-5, 1 - 1e-5))
        bc_loss = -cfg.bc_alpha * jnp.mean(apply_valid(gaussian_log_prob(means, log_stds, x) - tanh_log_det(x), valid))
        total = total + bc_loss
        info['actor/bc_loss'] = bc_loss
    return total, info


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """tanh(x), x ~ N(mean, (temperature std)^2): exploration at temperature 1, tanh(mean) at evaluation (temperature
    0), as the FQL code base's Actor scales its std; `stochastic_eval` always samples at temperature 1 (QAM's)."""
    means, log_stds = learner.apply('actor', params, observations)
    if learner.config.stochastic_eval:
        temperature = 1.0
    noise = jax.random.normal(rng, means.shape, means.dtype)
    return jnp.tanh(means + temperature * jnp.exp(log_stds) * noise)


# ---- presets ----------------------------------------------------------------------------------------------------
# FAV Table 12: RLPD was run offline-to-online only, on these OGBench domains (offline column 0 +- 0 everywhere: no
# offline training, the FQL README's --offline_steps=0).
FAV_TABLE12_DOMAINS = (
    'antmaze-giant-navigate-',
    'humanoidmaze-large-navigate-',
    'antsoccer-arena-navigate-',
    'cube-double-play-',
    'scene-play-',
    'puzzle-4x4-play-',
)


def fav_preset(env_name, setting='off2on'):
    """FAV Table 12's RLPD: the sac.py defaults above and the paper discount (0.995 on antmaze-giant, humanoidmaze,
    antsoccer, as the FQL README's RLPD command on humanoidmaze). FAV Table 6 holds no RLPD values. Run it with
    --offline_steps=0 --online_steps=1000000."""
    if setting == 'offline' or not env_name.startswith(FAV_TABLE12_DOMAINS):
        raise PresetError(
            f'FAV ran RLPD only offline-to-online (Table 12: --offline_steps=0 --online_steps=1000000) on '
            f'{", ".join(d + "*" for d in FAV_TABLE12_DOMAINS)}; no FAV values for {env_name!r}'
            + (' offline' if setting == 'offline' else '')
            + '.'
        )
    return with_discount(env_name, fav_table6(env_name, {}))


# The released QAM experiments/reproduce_rlpd.py `agent_params['RLPD']` per domain (keyed by the QAM Table 4 domain
# names of configs.presets.qam_domain). QAM Table 4 has no RLPD column, and the paper's text says RLPD "does not employ
# any behavior constraint" (Sec. 5); the released script sets these BC weights, and the released script wins.
QAM_RLPD_BC_ALPHA = {
    'puzzle-3x3-sparse': 0.01,
    'scene-sparse': 0.3,
    'cube-double': 0.1,
    'antmaze-large': 0.0,
    'humanoidmaze-medium': 0.03,
    'cube-triple': 0.0,
    'cube-quadruple-100M': 0.0,
    'puzzle-4x4-100M-sparse': 0.0,
    'antmaze-giant': 0.01,
    'humanoidmaze-large': 0.0,
}


def qam_preset(env_name, setting='off2on'):
    """RLPD as the QAM paper ran it (its offline-to-online comparison; experiments/reproduce_rlpd.py: online from
    scratch, --offline_steps=0 --online_steps=500000): QAM's protocol (K = 10, mean - rho std with rho 0.5 / 0 on
    humanoidmaze, chunks of 5 on manipulation, sparse scene / puzzle), its rlpd.py (pessimistic actor Q, TanhNormal
    with log std in [-20, 2] and output layers at scale 1, stochastic evaluation) and the per-domain bc_alpha."""
    if setting == 'offline':
        raise PresetError('QAM ran RLPD only online from scratch with offline data (--offline_steps=0).')
    values = qam_protocol(env_name)
    values.update(
        actor_q_agg='pessimistic',
        log_std_min=-20.0,
        actor_fc_scale=1.0,
        stochastic_eval=True,
        bc_alpha=QAM_RLPD_BC_ALPHA[qam_domain(env_name)],
        random_before_training=True,  # its main.py under --balanced_sampling: uniform actions until start_training
    )
    return values


PAPER = 'fav'  # FAV Table 12's RLPD row
PRESETS = {'fav': fav_preset, 'qam': qam_preset}
