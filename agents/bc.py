"""Behavior cloning: the reference row (BC) of VGF Table 7, whose numbers come from the FQL paper's BC baseline. No
released file of the three code bases is a BC agent (seohongpark/fql ships IQL, ReBRAC, FQL, IFQL and SAC; the VGF
code's BC is the `actor_bc` inside agents/vgf.py, `bc_policy_type` 'gau' or 'flow'), so BC is written in the FQL code
base's conventions, with two policies behind `policy`:

  'gaussian' (default; registry name 'bc'): maximum likelihood of a diagonal Gaussian, L = -mean_batch log N(a;
      mu(s), diag(sigma^2)), with the FQL code base's `Actor` as its IQL uses it (agents/common/networks.GaussianActor):
      unsquashed mean whose layer starts at variance scale 1e-2, std = 1 (`const_std`; False learns a state-independent
      log std clipped to [-5, 2], as the VGF code's 'gau' BC). It acts with the clipped mean at temperature 0
      (evaluation) and samples N(mu, (temperature sigma)^2) otherwise.
  'flow' (registry name 'bc_flow'): flow-matching BC, L = mean || v(s, x_t, t) - (a - x_0) ||^2 with
      x_t = (1 - t) x_0 + t a (FQL Eq. (1); the VGF code's 'flow' BC), acting with `flow_steps` Euler steps from
      z ~ N(0, I), clipped to [-1, 1] (the noise is not scaled by the temperature, as in the FQL and VGF codes).

BC trains no critic: the policy loss is the whole loss, and the shared trainer and runner need nothing else. The
critic keys of the shared config (value_hidden_dims, num_critics, q_agg, tau, discount, layer_norm) are unused.
"""

import re

import jax
import jax.numpy as jnp

from agents.common.networks import (
    GaussianActor,
    flow_field,
    flow_matching_loss,
    flow_sample,
    gaussian_log_prob,
)
from agents.common.rl import apply_valid, require_positive
from configs.common import base_config
from configs.presets import PresetError, read_table

POLICIES = ('gaussian', 'flow')
VARIANTS = {None: 'gaussian', 'flow': 'flow'}  # registry variant -> policy


def get_config(variant=None):
    if variant not in VARIANTS:
        raise ValueError(f"Unknown BC variant {variant!r}; valid: None (Gaussian BC) or 'flow' (flow BC).")
    config = base_config('bc' if variant is None else f'bc_{variant}')
    config.policy = VARIANTS[variant]  # 'gaussian': Gaussian MLE actor; 'flow': flow-matching BC with Euler sampling.
    config.const_std = True  # Gaussian: std = 1 (the FQL code base's Actor as IQL uses it); False learns a log std.
    config.actor_fc_scale = 0.01  # Gaussian: variance scale of the mean layer's initializer (1e-2, FQL code base).
    config.flow_steps = 10  # Flow: Euler steps from noise to action (FQL's and the VGF scripts' BC flow).
    return config


def validate(config):
    if config.policy not in POLICIES:
        raise ValueError(f'policy must be one of {", ".join(map(repr, POLICIES))}, got {config.policy!r}.')
    require_positive(config, 'flow_steps', 'actor_fc_scale')


def networks(config, obs_dim, action_dim):
    if config.policy == 'flow':
        return {'bc_flow': flow_field(config, obs_dim, action_dim)}
    actor = GaussianActor(
        config.actor_hidden_dims,
        action_dim,
        config.actor_layer_norm,
        config.const_std,
        tanh_mean=False,
        final_fc_init_scale=config.actor_fc_scale,
    )
    return {'actor': (actor, ((obs_dim,),))}


def target_networks(config):
    return ()


def loss(learner, params, state, batch, rng):
    obs, actions = batch['observations'], batch['actions']
    valid = batch.get('valid')  # action chunks past an episode end count as zeros (horizon_length > 1)
    if learner.config.policy == 'flow':
        bc_loss = flow_matching_loss(lambda x, t: learner.apply('bc_flow', params, obs, x, t), actions, rng, valid)
        return bc_loss, {'actor/loss': bc_loss}
    means, log_stds = learner.apply('actor', params, obs)
    log_prob = gaussian_log_prob(means, log_stds, actions)
    bc_loss = -apply_valid(log_prob, valid).mean()
    info = {
        'actor/loss': bc_loss,
        'actor/log_prob': log_prob.mean(),
        'actor/mse': jnp.mean((means - actions) ** 2),
        'actor/std': jnp.exp(log_stds).mean(),
    }
    return bc_loss, info


def sample_actions(learner, params, observations, rng, temperature=1.0):
    if learner.config.policy == 'flow':
        noises = jax.random.normal(rng, (*observations.shape[:-1], learner.action_dim))
        return flow_sample(learner, 'bc_flow', params, observations, noises)
    means, log_stds = learner.apply('actor', params, observations)
    noise = jax.random.normal(rng, means.shape) * jnp.exp(log_stds) * temperature
    return jnp.clip(means + noise, -1, 1)


def vgf_preset(env_name, variant=None):
    """VGF Table 7's BC row (Gaussian BC, the FQL paper's numbers): no per-task hyperparameters, so nothing to set;
    the preset only checks that the task is one of Table 7's OGBench environments and records the protocol. The VGF
    paper has no BC column for D4RL (Table 1). 'bc_flow' accepts the same tasks (the flow BC that VGF's L_test = 0
    samples from), with no published row of its own."""
    key = re.sub(r'-task\d+-(v\d+)$', r'-\1', env_name)
    table7 = sorted(r['env'] for r in read_table('vgf_hyperparameters.csv') if r['env'].endswith('-singletask-v0'))
    if key not in table7:
        raise PresetError(
            f'VGF Table 7 has no BC row for {env_name!r}; its environments (tasks 1-5 each): {", ".join(table7)}.'
        )
    return {}


PAPER = 'vgf'
PRESETS = {'vgf': vgf_preset}
