"""Config keys shared by every agent, with defaults from the papers (FQL / FAV / QAM common hyperparameters)."""

import ml_collections

# Agents whose defaults are the released QAM code (ColinQiyangLi/qam @ f93efd2). Its main.py takes no gradient step in
# the first QAM_START_TRAINING - 1 online steps (flag start_training, main.py:30; it updates at its online step
# i >= start_training, main.py:341), in offline-to-online runs too; the FQL and FAV codes update from the first step.
QAM_CODE_AGENTS = (
    *('qam', 'qam_fql', 'qam_edit', 'qam_fav'),
    *('fawac', 'fbrac', 'dsrl', 'fedit', 'cgql', 'cgql_mse', 'cgql_linex'),
)
QAM_START_TRAINING = 5000


def base_config(agent_name: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            agent_name=agent_name,  # Registry name of the agent.
            lr=3e-4,  # Adam learning rate (all networks).
            batch_size=256,  # Transitions per gradient step.
            actor_hidden_dims=(512, 512, 512, 512),  # Policy / flow networks (GELU MLP).
            value_hidden_dims=(512, 512, 512, 512),  # Critic / value networks.
            layer_norm=True,  # LayerNorm in the critic.
            actor_layer_norm=False,  # LayerNorm in the actor networks.
            num_critics=2,  # Critic ensemble heads K.
            discount=0.99,  # Discount factor gamma (0.995 for antmaze-giant, humanoidmaze, antsoccer presets).
            tau=0.005,  # Target-network Polyak rate.
            # Polyak step toward the parameters before this update, as every released code does (its target_update
            # reads self.network, the agent before the step); False: toward the updated parameters.
            target_from_old_params=True,
            q_agg='mean',  # Critic target aggregation over heads: 'mean', 'min', or 'pessimistic' (mean - rho*std).
            rho=0.5,  # Pessimism coefficient for q_agg='pessimistic' (QAM Eq. (26)).
            grad_clip_norm=0.0,  # Global-norm gradient clipping (0 = off).
            grad_clip_value=0.0,  # Element-wise gradient clipping (0 = off).
            mix_offline=0.0,  # Online phase: fraction of each batch drawn from the offline data (0.5 = RLPD-style).
            # Online phase: the first gradient step is taken at this online step, counted from 1 (0 or 1: at every
            # step); the steps before it only act and fill the buffer. The QAM code's main.py waits 5000 steps
            # (`start_training`: it updates at its step i >= 5000), the VGF code until its 4998th environment step,
            # the FQL and FAV codes not at all; each agent's defaults follow the code they reproduce.
            start_training=QAM_START_TRAINING if agent_name in QAM_CODE_AGENTS else 0,
            # Online phase: the steps before start_training act uniformly at random in [-1, 1] (one action, also
            # with action chunks), as the QAM code's main.py does under --balanced_sampling; False: the policy acts.
            random_before_training=False,
            # Action chunking (QAM's protocol; Li, Zhou, Levine 2025): the policy outputs h actions, executed open-loop
            # (one policy call per h environment steps), the critic scores the flattened chunk Q(s_t, a_{t:t+h}) and
            # bootstraps with gamma^h from the state after it. 1 = no chunking.
            horizon_length=1,
        )
    )


# Sizes used by small tasks (the FAV toy bandit): 3 hidden layers x 256 (FAV Appendix A.1).
TOY_NETWORKS = dict(actor_hidden_dims=(256, 256, 256), value_hidden_dims=(256, 256, 256))


def validate_common(config) -> None:
    """Raise ValueError for invalid shared hyperparameters."""
    if not 0.0 <= config.discount <= 1.0:
        raise ValueError(f'discount must be in [0, 1], got {config.discount}.')
    if not 0.0 < config.tau <= 1.0:
        raise ValueError(f'tau (target-network rate) must be in (0, 1], got {config.tau}.')
    if config.lr <= 0:
        raise ValueError(f'lr must be positive, got {config.lr}.')
    if config.batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {config.batch_size}.')
    if config.q_agg not in ('mean', 'min', 'pessimistic'):
        raise ValueError(f"q_agg must be 'mean', 'min' or 'pessimistic', got {config.q_agg!r}.")
    if config.num_critics < 1:
        raise ValueError(f'num_critics must be >= 1, got {config.num_critics}.')
    if not (isinstance(config.horizon_length, int) and config.horizon_length >= 1):
        raise ValueError(f'horizon_length (action chunk size) must be an integer >= 1, got {config.horizon_length}.')
    if not 0.0 <= config.mix_offline < 1.0:
        raise ValueError(f'mix_offline must be in [0, 1), got {config.mix_offline}.')
    st = config.get('start_training', 0)
    if not (isinstance(st, int) and not isinstance(st, bool) and st >= 0):
        raise ValueError(
            f'start_training (the online step of the first gradient step) must be an integer >= 0, got {st!r}.'
        )
    # utd_ratio (gradient steps per environment step online; agents/common/trainer.py add_and_train) is a key of the
    # agents that declare it (rlpd); the trainer reads it with default 1.
    utd = config.get('utd_ratio', 1)
    if not (isinstance(utd, int) and not isinstance(utd, bool) and utd >= 1):
        raise ValueError(f'utd_ratio (gradient steps per environment step) must be an integer >= 1, got {utd!r}.')


# Keys that only act together with another key's value: {key: (description, predicate on the config)}. Setting one
# explicitly where it would be ignored is an error, never silent.
CONDITIONAL_KEYS = {
    'rho': (
        lambda c: f"q_agg (or grad_q_agg / actor_q_agg) = 'pessimistic' (q_agg is {c.get('q_agg')!r})",
        lambda c: 'pessimistic' in (c.get('q_agg'), c.get('grad_q_agg'), c.get('actor_q_agg')),
    ),
    # QAM: the released scheme's BAM (agents/bam.py) differentiates the current critic, never the target.
    'target_critic_grad': (
        lambda c: f"bam=False or sde_scheme='exact' (bam is {c.get('bam')!r}, sde_scheme {c.get('sde_scheme')!r})",
        lambda c: not (c.get('bam') and c.get('sde_scheme') == 'released'),
    ),
    # VGF: the MaxEnt temperature and the median bandwidth's gradient act only in the MaxEnt form of Eq. (7).
    'alpha': (
        lambda c: f'maxent=True (VGF; maxent is {c.get("maxent")!r})',
        lambda c: c.get('agent_name') != 'vgf' or bool(c.get('maxent')),
    ),
    'bandwidth_grad': (
        lambda c: f'maxent=True and bandwidth=0 (maxent is {c.get("maxent")!r}, bandwidth {c.get("bandwidth")!r})',
        lambda c: bool(c.get('maxent')) and not c.get('bandwidth'),
    ),
    # RLPD: critic-only steps exist only with several gradient steps per environment step.
    'utd_actor_once': (
        lambda c: f'utd_ratio > 1 (utd_ratio is {c.get("utd_ratio")!r})',
        lambda c: c.get('utd_ratio', 1) > 1,
    ),
    'random_before_training': (
        lambda c: f'start_training > 1 (start_training is {c.get("start_training")!r})',
        lambda c: c.get('start_training', 0) > 1,
    ),
    # CGQL: the noisy-action regression exists in the mse / linex modes, its clip in linex alone.
    'noisy_coef': (
        lambda c: f"mode='mse' or 'linex' (cgql_mse / cgql_linex; mode is {c.get('mode')!r})",
        lambda c: c.get('mode') in ('mse', 'linex'),
    ),
    'isd_clip': (
        lambda c: f"mode='linex' (cgql_linex; mode is {c.get('mode')!r})",
        lambda c: c.get('mode') == 'linex',
    ),
    'normalize_r_scale': (
        lambda c: f'normalize_r=True (normalize_r is {c.get("normalize_r")!r})',
        lambda c: bool(c.get('normalize_r')),
    ),
}


def check_explicit_keys(config, explicit) -> None:
    """Raise ValueError for an explicitly set key that the resolved config ignores."""
    for key, (needs, used) in CONDITIONAL_KEYS.items():
        if key in explicit and key in config and not used(config):
            raise ValueError(f'--agent.{key} has no effect unless {needs(config)}; set that too or drop --agent.{key}.')
