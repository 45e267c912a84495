"""FAWAC, flow advantage-weighted actor-critic (the FQL paper's baseline, Park, Li, Levine 2025; QAM paper App. C,
Eqs. (73)-(76)), as the released QAM code runs it (github.com/ColinQiyangLi/qam @ f93efd2, agents/fawac.py; the
FQL paper's own FAWAC code is not public, seohongpark/fql issue #14).

Networks: a flow policy v(s, x, t) (the released `actor`), the critic ensemble Q_k(s, a) (K = 10 heads) with a Polyak
target, and a state value V(s). One Adam step on the sum of the three losses (no gradient clipping), each with the
released formula:
    critic (critic_loss):  TD of every head onto y = r + gamma^h m (mean_k - rho std_k) Qbar_k(s', a'), a' a flow
                           sample of the current policy (= agents.common.rl.critic_td_loss with q_agg='pessimistic')
    value  (critic_loss):  mean_{k, batch} (Qbar_k(s, a) - V(s))^2: V regresses by MSE onto every TARGET head at the
                           DATA action (`value_target='critic'`). The QAM paper's Eq. (76) regresses V onto the TD
                           target y instead: `value_target='td'`.
    actor  (actor_loss):   mean_batch w(s, a) mean_dims ||v(s, x_t, t) - (a - x_0)||^2 (flow matching on the data,
                           x_t = (1 - t) x_0 + t a, x_0 ~ N(0, I), t ~ U[0, 1]) with
                           w = min(exp(inv_temp (mean_k Q_k(s, a) - V(s))), 100): the advantage from the CURRENT
                           critic's head mean (not the pessimistic aggregate) and the current V, no gradient into
                           either; 100 is IQL's clip, hard-coded in the released code.
Action chunks (h = horizon_length > 1): the critic and V see the flattened chunk, the losses drop invalid chunks
(`valid`) as the released `* batch['valid'][..., -1]` does.

Acting (sample_actions, also the critic's next actions): `flow_steps` Euler steps of v from x_0 ~ N(0, I), clipped
to [-1, 1]; stochastic at every temperature, as the released evaluation (it never passes a temperature).
"""

import math

import jax
import jax.numpy as jnp

from agents.common.networks import Value, flow_field, flow_matching_loss, flow_sample
from agents.common.rl import aggregate_q, apply_valid, critic_networks, critic_td_loss, td_discount
from configs.common import base_config
from configs.presets import fav_table6, qam_protocol, qam_reproduce, qam_rho, with_discount

VALUE_TARGETS = ('critic', 'td')
MAX_WEIGHT = 100.0  # min(exp(inv_temp A), 100): the released clip (IQL's, ikostrikov/implicit_q_learning actor.py)


def get_config():
    config = base_config('fawac')
    # Critic as released (get_config num_qs=10, rho=0.5; critic_loss: target mean - rho * std over the heads).
    config.num_critics = 10  # Critic heads K.
    config.q_agg = 'pessimistic'  # Target aggregation mean - rho * std (QAM Eq. (26)).
    config.rho = 0.5  # Pessimism rho (QAM Table 3: 0.5; humanoidmaze 0 in the qam preset).
    # AWR inverse temperature of exp(inv_temp (Q - V)) (released default 10; per domain with a preset: reproduce.py's
    # inv_temp, or FAV Table 6's FAWAC alpha).
    config.inv_temp = 10.0
    config.flow_steps = 10  # Euler steps of the flow policy.
    # What V regresses onto: 'critic' (released: every target-critic head at the data action) or 'td' (the QAM
    # paper's Eq. (76): the critic's TD target r + gamma^h m (mean - rho std) Qbar(s', a')).
    config.value_target = 'critic'
    return config


def validate(config):
    if not (0.0 <= config.inv_temp < math.inf):
        raise ValueError(f'inv_temp (FAWAC inverse temperature) must be finite and >= 0, got {config.inv_temp}.')
    if config.flow_steps < 1:
        raise ValueError(f'flow_steps must be >= 1, got {config.flow_steps}.')
    if config.value_target not in VALUE_TARGETS:
        raise ValueError(f'value_target must be one of {", ".join(VALUE_TARGETS)}, got {config.value_target!r}.')


def networks(config, obs_dim, action_dim):
    return {
        **critic_networks(config, obs_dim, action_dim),
        'value': (Value(config.value_hidden_dims, config.layer_norm), ((obs_dim,),)),
        'actor': flow_field(config, obs_dim, action_dim),
    }


def target_networks(config):
    return ('critic',)


def flow_actions(learner, params, observations, noises):
    """Euler integration of the policy flow from `noises`, clipped (released compute_flow_actions)."""
    return flow_sample(learner, 'actor', params, observations, noises)


def sample_actions(learner, params, observations, rng, temperature=1.0):
    """A flow sample from fresh noise (released sample_actions), at every temperature."""
    noises = jax.random.normal(rng, (*observations.shape[:-1], learner.action_dim))
    return flow_actions(learner, params, observations, noises)


def advantage_weights(learner, params, observations, actions):
    """(w, A): A = mean_k Q_k(s, a) - V(s) from `params` (the current networks), w = min(exp(inv_temp A), 100)."""
    q = aggregate_q(learner.apply('critic', params, observations, actions), 'mean')
    adv = q - learner.apply('value', params, observations)
    return jnp.minimum(jnp.exp(adv * learner.config.inv_temp), MAX_WEIGHT), adv


def value_loss(learner, params, state, batch, next_actions):
    """(loss, V(s)): MSE of V onto the target critic's heads at the data action (released), or onto the TD target with
    the critic's next actions (`value_target='td'`, QAM Eq. (76)); invalid chunks count as zeros."""
    cfg = learner.config
    obs, valid = batch['observations'], batch.get('valid')
    v = learner.apply('value', params, obs)
    if cfg.value_target == 'critic':
        target = learner.apply('critic', state.target_params, obs, batch['actions'])  # (K, B)
        return jnp.mean(apply_valid((target - v) ** 2, valid, axis=1)), v
    next_qs = learner.apply('critic', state.target_params, batch['next_observations'], next_actions)
    target = batch['rewards'] + td_discount(cfg) * batch['masks'] * aggregate_q(next_qs, cfg.q_agg, cfg.rho)
    return jnp.mean(apply_valid((target - v) ** 2, valid)), v


def loss(learner, params, state, batch, rng):
    obs, actions, valid = batch['observations'], batch['actions'], batch.get('valid')
    next_rng, fm_rng = jax.random.split(rng)

    # Critic: TD onto the pessimistic target with a flow sample of the current policy at s'.
    next_actions = sample_actions(learner, state.params, batch['next_observations'], next_rng)
    critic_loss, info = critic_td_loss(learner, params, state, batch, next_actions)
    v_loss, v = value_loss(learner, params, state, batch, next_actions)

    # Actor: advantage-weighted flow matching. The per-sample factor of flow_matching_loss (its `valid`) carries
    # w * valid, so the loss is mean_batch(w * valid * mean_dims(squared velocity error)), the released formula.
    weights, adv = advantage_weights(learner, state.params, obs, actions)
    factor = weights if valid is None else weights * valid
    actor_loss = flow_matching_loss(lambda x, t: learner.apply('actor', params, obs, x, t), actions, fm_rng, factor)

    info.update(
        {
            'value/loss': v_loss,
            'value/v_mean': v.mean(),
            'actor/loss': actor_loss,
            'actor/adv': adv.mean(),
            'actor/weight': weights.mean(),
            'actor/weight_max': weights.max(),
        }
    )
    return critic_loss + v_loss + actor_loss, info


def qam_preset(env_name):
    """FAWAC as QAM Table 1 ran it: QAM's protocol (configs.presets.qam_protocol: K = 10, rho, discount, chunks of 5 on
    manipulation) and reproduce.py's inv_temp per domain. QAM Table 4 has no FAWAC column, so nothing to compare."""
    return {**qam_protocol(env_name), **qam_reproduce('fawac', env_name, {'inv_temp': 'inv_temp'})}


def fav_preset(env_name):
    """FAV Table 6's FAWAC alpha as inv_temp. FAV carried its FAWAC numbers over from the FQL paper (FAV App. A.2),
    whose alpha is the AWR inverse temperature of exp(alpha (Q - V)) (the same symbol and role as IQL's alpha in the
    FQL code base, agents/iql.py exp(adv * alpha)), i.e. inv_temp here. The FQL paper's FAWAC code is unreleased;
    the rest is this (released QAM) FAWAC under FAV's critic setup, as agents/qam_fav.py: 2 heads, no chunks,
    FAV's discounts, the released mean - rho * std target (rho 0 on humanoidmaze)."""
    values = fav_table6(env_name, {'inv_temp': 'fawac_alpha'})
    return with_discount(env_name, {**values, 'num_critics': 2, 'rho': qam_rho(env_name)})


# The agent's own preset is QAM's: the implementation is the released QAM code, and reproduce.py's inv_temp values
# were tuned for exactly that code (10 pessimistic heads, chunks, V on the target heads). FAV Table 6's values are the
# FQL paper's, tuned for its own (unreleased) FAWAC.
PAPER = 'qam'
PRESETS = {'qam': qam_preset, 'fav': fav_preset}
