"""Parity harness: tiltbench's main.py beside an author's released main.py, same data, seeds, budget and
hyperparameters, compared metric by metric at matched steps.

    python scripts/parity.py --released=/path/to/fql --released_python=/path/to/venv/bin/python \
        --agents=fql,iql,rebrac --env_name=pointmaze-medium-navigate-singletask-task1-v0 --seeds=4 --steps=10000 \
        --out=runs/parity/pointmaze --table=results/parity/fql_repo.md

Nothing of the released code is imported or installed here: it runs in its own Python (`--released_python`, a
virtual environment that can run it) from its own checkout (`--released`), unedited. Its wandb logging needs a
network, so the harness starts its main.py through a two-line launcher that calls wandb.init with
mode='disabled' and then runs main.py as __main__ (said in the table header). MuJoCo rendering, which ogbench 1.1
does when it builds a maze, gets MUJOCO_GL=egl unless it is set.

Both sides read the same OGBench files from ~/.ogbench/data (the released main.py has no dataset-directory flag;
their SHA-256 goes into the table). Both sides log at every --log_interval step the metrics of that one gradient
step (tiltbench with --train_metrics=step, so a row is not an average over a fused chunk; --updates_per_call, default
1, fuses that many steps into one jitted call as main.py does: the same steps), and evaluate at every
--eval_interval. For each metric both sides log (names mapped below), at each matched step: the mean and 95% t-CI per
side over seeds, and Welch's 95% CI of the difference; a row is indistinguishable when that CI holds 0. The seed-to-
seed spread is compared with the F test of the two variances (95%). ms per update: the median over log intervals
without an evaluation of wall time / steps (the released code's own time/epoch_time; tiltbench's train.csv time
column divided by the number of seeds trained in the process).

Released repositories (`--released_repo`, or inferred from the checkout's files; REPOS below):
  fql  seohongpark/fql: fql, iql, rebrac (AGENT_MAP), ifql (agents/ifql.py, every key placed as below).
  qam  ColinQiyangLi/qam: qam, qam_fql, qam_edit, qam_fav = its agents/qam.py (fql_alpha / edit_scale), qam with
       bam=True = its agents/bam.py, fawac = its agents/fawac.py; the non-chunked setting (--horizon_length=1,
       agent.action_chunking=False), no online phase (its main.py defaults to 500K online steps); logs
       offline_agent.csv / eval.csv, no time column.
  fav  Jaewoopudding/FAV, main.py in fav-offrl/: fav, fav_adaptive (bandwidth_method fixed / scott).
  vgf  ryanxhr/vgf: vgf; --env_name=ogbench:<name>; its evaluation logs every L_test in (0, 1, 2, 3): tiltbench's
       primary score is compared with evaluation_{L}/success at its L, and each other L_test column ('L2/score')
       with evaluation_{L}/success.
For those three, every tiltbench config key is mapped, fixed, or said not to act (Mapping), and a config the released
code cannot express (e.g. QAM's sde_scheme='exact', FAV's unclamped_kde, VGF's maxent=False) is refused before
anything runs.

Runs already finished (their eval.csv has the last step) are not run again, so an interrupted harness resumes.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# tiltbench agent -> (released agent config file, {tiltbench config key: released config key}, {released metric:
# tiltbench metric}). Only these keys are passed, to both sides, with tiltbench's resolved values.
_COMMON_KEYS = ['lr', 'batch_size', 'actor_hidden_dims', 'value_hidden_dims', 'layer_norm', 'actor_layer_norm']
_COMMON_KEYS += ['discount', 'tau']
AGENT_MAP = {
    'fql': (
        'agents/fql.py',
        {k: k for k in _COMMON_KEYS + ['q_agg', 'alpha', 'flow_steps', 'normalize_q_loss']},
        {
            'critic/critic_loss': 'critic/loss',
            'critic/q_mean': 'critic/q_mean',
            'critic/q_max': 'critic/q_max',
            'critic/q_min': 'critic/q_min',
            'actor/actor_loss': 'actor/loss',
            'actor/bc_flow_loss': 'actor/bc_flow_loss',
            'actor/distill_loss': 'actor/distill_loss',
            'actor/q_loss': 'actor/q_loss',
            'actor/q': 'actor/q',
        },
    ),
    'iql': (
        'agents/iql.py',
        {k: k for k in _COMMON_KEYS + ['expectile', 'alpha', 'const_std']},
        {
            'value/value_loss': 'value/loss',
            'value/v_mean': 'value/v_mean',
            'critic/critic_loss': 'critic/loss',
            'critic/q_mean': 'critic/target_mean',  # the released IQL logs the TD target's mean under q_mean
            'actor/actor_loss': 'actor/loss',
            'actor/adv': 'actor/adv',
            'actor/mse': 'actor/mse',
        },
    ),
    'rebrac': (
        'agents/rebrac.py',
        {
            k: k
            for k in _COMMON_KEYS
            + ['alpha_actor', 'alpha_critic', 'actor_freq', 'actor_noise', 'actor_noise_clip', 'actor_fc_scale']
        },
        {
            'critic/critic_loss': 'critic/loss',
            'critic/q_mean': 'critic/q_mean',
            'actor/total_loss': 'actor/loss',
            'actor/actor_loss': 'actor/q_loss',  # the released ReBRAC's actor_loss is the normalized -Q term
            'actor/mse': 'actor/bc_loss',  # the released bc_loss is alpha_actor * mse; tiltbench's is the mse
        },
    ),
}
SCORE = 'score'  # tiltbench's eval.csv column; the released evaluation/success x 100

LAUNCHER = (
    'import runpy, sys, wandb; _init = wandb.init; '
    "wandb.init = lambda *a, **k: _init(*a, **dict(k, mode='disabled')); "
    "sys.argv = ['main.py'] + sys.argv[1:]; runpy.run_path('main.py', run_name='__main__')"
)

# The released QAM main.py writes wandb's run.url into token.tk at its very end (main.py l.386), and a disabled run's
# url is None there (wandb 0.17): this launcher also gives the disabled run's class a string url, so the run exits 0.
QAM_LAUNCHER = (
    'import runpy, sys, wandb\n'
    '_init = wandb.init\n'
    'def _disabled(*a, **k):\n'
    "    run = _init(*a, **dict(k, mode='disabled'))\n"
    "    if not isinstance(getattr(run, 'url', None), str):\n"
    "        type(run).url = property(lambda self: 'wandb-disabled')\n"
    '    return run\n'
    "wandb.init = _disabled; sys.argv = ['main.py'] + sys.argv[1:]; runpy.run_path('main.py', run_name='__main__')"
)


# ---- released repositories: which main.py, which agent file, which flags and logs -------------------------------
@dataclasses.dataclass(frozen=True)
class Mapping:
    """One tiltbench agent in one released repository. With `classified` every tiltbench config key is in one of
    the groups below, and the harness refuses a config it cannot place (a new tiltbench key needs a decision here):
      keys            {tiltbench key: released key}: the same value, passed to both sides;
      derived         {released key: (tiltbench keys, fn(config) -> released value)}: the tiltbench keys go to
                      tiltbench as they are, the released key gets fn's value (a switch spelled differently there);
      fixed           {released key: value}: released switches tiltbench has no key for, held at what tiltbench does;
      allowed         {tiltbench key: (allowed values or a predicate, why)}: the values the released code can
                      express; any other is refused with `why`;
      tiltbench_only  tiltbench keys passed to tiltbench only (the released side is fixed by its file or main.py);
      unused          {tiltbench key: why}: passed to neither side, as they act on neither in this comparison.
    A key not passed to tiltbench (only in `allowed` or `unused`) must keep tiltbench's default, or tiltbench's run
    would differ from the config the harness checked. The FQL repository's original mapping (AGENT_MAP) passes its
    keys and checks nothing else (`classified=False`)."""

    cfg_file: str
    keys: dict
    metrics: dict  # {released metric (without the train CSV's column prefix): tiltbench metric}
    derived: dict = dataclasses.field(default_factory=dict)
    fixed: dict = dataclasses.field(default_factory=dict)
    allowed: dict = dataclasses.field(default_factory=dict)
    tiltbench_only: tuple = ()
    unused: dict = dataclasses.field(default_factory=dict)
    classified: bool = True

    def tiltbench_keys(self) -> list[str]:
        out = list(self.keys)
        for tkeys, _ in self.derived.values():
            out += [k for k in tkeys if k not in out]
        return out + [k for k in self.tiltbench_only if k not in out]


@dataclasses.dataclass(frozen=True)
class Repo:
    """A released repository's conventions: where its main.py is, the fixed main.py flags the setting tiltbench runs
    needs, how its logs are found and named, and how its evaluation score is read."""

    name: str
    title: str
    markers: tuple  # files (relative to the checkout) that only this repository has: for --released_repo=auto
    agents: dict  # {tiltbench agent: Mapping, or fn(config) -> Mapping where the config picks the released file}
    subdir: str = ''  # main.py's folder in the checkout
    main_flags: tuple = ()
    env_prefix: str = ''  # prefix of --env_name
    train_file: str = 'train.csv'
    train_prefix: str = 'training/'  # column prefix of the agent's metrics in train_file
    time_column: str | None = 'time/epoch_time'  # seconds per update over the last log interval
    eval_file: str = 'eval.csv'
    launcher: str = LAUNCHER
    # fn(config) -> {tiltbench eval.csv column: released eval column}; SCORE is the primary score. The released
    # columns are success rates in [0, 1], tiltbench's in percent.
    eval_columns: object = None


def _not_expressible(agent, key, value, why) -> ValueError:
    return ValueError(f'{agent}: {key}={value!r} cannot be expressed by the released code: {why}')


def _qam_clip_grad(config):
    """QAM's clip_grad (released agents/qam.py create, l.387-391): optax.clip_by_global_norm(1.0) before Adam, or no
    clipping; tiltbench's grad_clip_norm / grad_clip_value (checked by `allowed`)."""
    return config.grad_clip_norm == 1.0


# Shared keys, same names and meaning on both sides (the network sizes, the common optimizer and target settings).
_NET_KEYS = ['batch_size', 'actor_hidden_dims', 'value_hidden_dims', 'actor_layer_norm', 'discount', 'tau']
_UNUSED = {
    'agent_name': 'the registry name; the released side is chosen by its agent file',
    **dict.fromkeys(
        ('mix_offline', 'start_training', 'random_before_training'),
        'acts in the online phase only; the harness compares offline training (no online steps)',
    ),
}
_OLD_PARAMS = ((True,), 'its target_update reads self.network / self.critic, the parameters before the step')
# Action chunking: the QAM repository's chunked setting is not mapped yet (the harness runs --horizon_length=1 with
# action_chunking=False); the FAV and VGF code has no chunks.
_NO_CHUNKS = ((1,), 'the harness compares the non-chunked setting (horizon_length=1)')

# ColinQiyangLi/qam @ f93efd2 (agents/qam.py, agents/bam.py, main.py). Line numbers are of that commit.
_QAM_KEYS = {
    'lr': 'lr',
    **{k: k for k in _NET_KEYS},
    'layer_norm': 'value_layer_norm',  # the critic's LayerNorm (create, l.345-349)
    'num_critics': 'num_qs',
    'rho': 'rho',  # target mean - rho * std (critic_loss, l.33)
    'flow_steps': 'flow_steps',
    'inv_temp': 'inv_temp',
    'residual': 'residual',  # l.67-70, l.140-143
    'bc_flow_target': 'target_actor',  # Polyak-target f_beta in the SDE, adjoint and loss (l.57, l.126)
}
_QAM_FIXED = {
    'action_chunking': False,  # tiltbench's QAM is the non-chunked setting (with main.py's --horizon_length=1)
    'best_of_n': 1,  # tiltbench acts with one sample (sample_actions, l.268-299: argmax over 1)
}
_QAM_ALLOWED = {
    'q_agg': (('pessimistic',), 'its critic target is always mean - rho * std over the heads (critic_loss, l.33)'),
    'sde_scheme': (
        ('released',),
        "it has only its Euler-Maruyama scheme (adj_matching, l.49-102); 'exact' is tiltbench's own integrator",
    ),
    'grad_clip_norm': ((0.0, 1.0), 'clip_grad clips the global norm at 1 or not at all (create, l.387-391)'),
    'grad_clip_value': ((0.0,), 'it has no element-wise gradient clipping (create, l.387-391)'),
    'target_from_old_params': _OLD_PARAMS,
    'horizon_length': _NO_CHUNKS,
}
# Not mapped in any released repository: grad/max, grad/min, grad/norm (utils/flax_utils.py apply_loss_fn: the signed
# max / min over arrays and the sum of the per-array L2 norms), while tiltbench's grad/norm is the global L2 norm and
# grad/max the max |g|: different numbers of the same gradient.
_QAM_METRICS = {
    'critic/critic_loss': 'critic/loss',  # mean over heads and batch on both sides (l.39)
    'critic/q_mean': 'critic/q_mean',
    'critic/q_max': 'critic/q_max',
    'critic/q_min': 'critic/q_min',
    'actor/flow_loss': 'actor/bc_flow_loss',  # flow matching of f_beta (l.121; valid = 1 with horizon_length=1)
}
_QAM_AM_METRICS = {
    'actor/adj_loss': 'actor/am_loss',  # l.141-145 (its actor/fast_loss is the same number and is left out)
    # |g_T| = |inv_temp grad_a Q(s, clip(a_T))| before the backward pass (pre_adj_info, l.85-90)
    'actor/adj_mean': 'actor/adj_final_abs',
    'actor/adj_max': 'actor/adj_final_max',
    'actor/adj_std': 'actor/adj_final_std',
}


def _qam_mapping(variant):
    """The released agents/qam.py for plain QAM ('qam', 'qam_fav'), QAM-FQL ('fql') and QAM-EDIT ('edit');
    plain QAM with bam=True is the released agents/bam.py."""

    def mapping(config):
        if config.bam and variant == 'qam':
            return _bam_mapping()
        keys = dict(_QAM_KEYS, target_critic_grad='use_target_grad')  # g_T from the target critic (l.79)
        derived = {'clip_grad': (('grad_clip_norm', 'grad_clip_value'), _qam_clip_grad)}
        fixed = dict(_QAM_FIXED, clip_adj=True)  # tiltbench clips a_T before grad_a Q (l.80-83)
        allowed = dict(_QAM_ALLOWED, bam=((False,), 'agents/bam.py has no one-step / edit policy'))
        metrics = dict(_QAM_METRICS, **_QAM_AM_METRICS)
        if variant == 'fql':
            # alpha = inf (tiltbench's plain QAM) is the released fql_alpha = 0 (no one-step policy, l.151, l.277)
            derived['fql_alpha'] = (('alpha',), lambda c: 0.0 if math.isinf(c.alpha) else c.alpha)
            fixed['edit_scale'] = 0.0
            # both: ||mu(s, z) - clip(flow(z))||^2 with mu unclipped, and -mean_k Q_k(s, clip(mu)) (l.161-170)
            metrics.update({'actor/fql_distill_loss': 'actor/distill_loss', 'actor/fql_q_loss': 'actor/onestep_q_loss'})
        else:
            fixed['fql_alpha'] = 0.0
        if variant == 'edit':
            keys['sigma_a'] = 'edit_scale'  # 0 = plain QAM on both sides (l.174, l.286)
            # The released target entropy is -edit_target_entropy_multiplier * action_dim (create, l.342-343);
            # tiltbench's edit_entropy_target * action_dim.
            derived['edit_target_entropy_multiplier'] = (('edit_entropy_target',), lambda c: -c.edit_entropy_target)
            metrics.update({f'actor/edit_{m}': f'actor/edit_{m}' for m in ('q_loss', 'entropy_loss', 'alpha_loss')})
            # edit_alpha: exp(log alpha) (LogParam, utils/networks.py); edit_entropy: -mean log pi (l.194-206)
            metrics.update({'actor/edit_entropy': 'actor/edit_entropy', 'actor/edit_alpha': 'actor/edit_alpha'})
        else:
            fixed['edit_scale'] = 0.0
        return Mapping('agents/qam.py', keys, metrics, derived, fixed, allowed, unused=dict(_UNUSED))

    return mapping


def _bam_mapping():
    """tiltbench's qam with bam=True (released scheme) = the released agents/bam.py: backprop through the SDE with
    the current critic, global-norm clipping at 1 hard-coded (l.264), no use_target_grad / clip_adj / fql / edit."""
    allowed = dict(_QAM_ALLOWED, grad_clip_norm=((1.0,), 'agents/bam.py always clips the global norm at 1 (l.264)'))
    unused = dict(_UNUSED, target_critic_grad='agents/bam.py differentiates the current critic (actor_loss, l.108-110)')
    metrics = dict(_QAM_METRICS)
    # -inv_temp (mean - rho std)(Q(s, a_T)) + running cost; the running cost sum_{i<T-1} 2 ||u_i||^2 / sigma_i^2
    # (compute_sde, l.64-84; actor_loss l.106-112)
    metrics.update({'actor/bam_loss': 'actor/bam_loss', 'actor/bc_loss': 'actor/bam_bc_loss'})
    return Mapping('agents/bam.py', dict(_QAM_KEYS), metrics, {}, dict(_QAM_FIXED), allowed, ('bam',), unused)


# Jaewoopudding/FAV @ 5fd6c80, fav-offrl/ (agents/fav.py, main.py). Line numbers are of fav-offrl/agents/fav.py.
_FAV_BANDWIDTH_METHOD = {'off': 'fixed', 'batch': 'scott'}
_FAV = Mapping(
    'agents/fav.py',
    keys={
        'lr': 'lr',
        **{k: k for k in _NET_KEYS},
        'layer_norm': 'layer_norm',
        'q_agg': 'q_agg',
        'beta': 'beta',
        # The kernel temperature tau of exp(-||x - y||^2 / tau) on both sides; ignored by both with Scott's rule.
        'bandwidth': 'bandwidth',
        'num_particles': 'gen_multiplier',  # particles per state (actor_loss, l.105-120)
    },
    metrics={
        'critic/critic_loss': 'critic/loss',  # mean over heads and batch on both sides (l.93)
        'critic/q_mean': 'critic/q_mean',
        'critic/q_max': 'critic/q_max',
        'critic/q_min': 'critic/q_min',
        # The Stein transport's norm and grad_a Q's norm (l.76, l.136-141). Both sides differentiate Q(s, x) at the
        # clipped particles x directly (l.53-63), so a particle on the bound gets the full one-sided gradient.
        'actor/drift_norm': 'actor/phi_norm',
        'actor/nabla_q_norm': 'actor/grad_q_norm',
        'actor/prior_score_norm': 'actor/prior_norm',  # the clamped KDE score (l.42-46)
        'actor/gen_abs_mean': 'actor/abs_mean',  # mean |clip(pi(s, z))| (l.138)
        'actor/bandwidth': 'actor/bandwidth',
        'actor/bandwidth_std': 'actor/action_std',  # Scott's rule only: mean_j std(a_j) of the batch (l.25)
        # The released actor loss (drift_loss, l.134) is not logged: tiltbench's actor/loss has no counterpart.
    },
    derived={'bandwidth_method': (('adaptive_bandwidth',), lambda c: _FAV_BANDWIDTH_METHOD[c.adaptive_bandwidth])},
    allowed={
        'q_agg': (('mean', 'min'), "its critic target is min if q_agg == 'min' else mean (critic_loss, l.85-88)"),
        'num_critics': ((2,), 'its critic has num_ensembles=2 (create, l.242)'),
        'grad_clip_norm': ((0.0,), 'its optimizer is optax.adam without clipping (create, l.264)'),
        'grad_clip_value': ((0.0,), 'its optimizer is optax.adam without clipping (create, l.264)'),
        'adaptive_bandwidth': (
            tuple(_FAV_BANDWIDTH_METHOD),
            "its Scott's rule is computed on each batch (get_adaptive_bandwidth, l.15-29); 'dataset' (the paper's "
            'App. A.2 text) has no released counterpart',
        ),
        'ref_actions': (('own',), "the KDE's reference is the state's own batch action (pos, l.121)"),
        'unclamped_kde': ((False,), 'its KDE normalizer is clipped at 1e-6 (get_drift, l.44)'),
        'unclipped_particles': ((False,), 'its particles are clipped to [-1, 1] before the drift and loss (l.118)'),
        'grad_q_agg': (('mean',), 'grad_a Q is of the mean of the critic heads (get_drift, l.53-56)'),
        'use_prior': ((True,), 'the prior term is always on (l.65)'),
        'use_value': ((True,), 'the value term is always on (l.65)'),
        'use_repulsive': ((True,), 'the repulsive term is always on (l.67-74)'),
        'q_grad': (('autodiff',), 'grad_a Q is by jax.grad (l.58-63)'),
        'target_from_old_params': _OLD_PARAMS,
        'horizon_length': _NO_CHUNKS,
    },
    unused={
        **_UNUSED,
        'rho': "acts only with q_agg / grad_q_agg = 'pessimistic', which the released code cannot express",
        'zo_num_dirs': "acts only with q_grad='zeroth_order', which the released code cannot express",
        'zo_eta': "acts only with q_grad='zeroth_order', which the released code cannot express",
    },
)

# ryanxhr/vgf @ 3ec8f9b (agents/vgf.py, main.py, utils/networks.py). Line numbers are of agents/vgf.py.
VGF_TEST_STEPS = (0, 1, 2, 3)  # main.py evaluates these L_test at every evaluation (step_list, main.py l.269)
_VGF = Mapping(
    'agents/vgf.py',
    keys={
        **{k: k for k in _NET_KEYS},
        'layer_norm': 'layer_norm',
        'activation': 'activations',
        'q_agg': 'train_q_agg',  # heads of the TD target (l.222-225) and of best-of-N (l.327-330)
        'grad_q_agg': 'vgf_q_agg',  # heads of the Q whose gradient drives the flow (SVGD_VGF.phi, l.125)
        'flow_steps': 'bc_flow_steps',
        'num_particles': 'vgf_particles',
        'train_vgf_steps': 'train_vgf_steps',
        'vgf_step_size': 'vgf_lr',  # the particle Adam's learning rate (l.208)
        'alpha': 'vgf_alpha',  # K grad Q / alpha (l.142)
        'train_select': 'train_particle_select',
        'eval_select': 'eval_particle_select',  # 'random' is its fall-through branch (l.339-341)
    },
    metrics={
        # Care: both sum the two heads' batch-mean squared TD errors (l.238; tiltbench's 'td' loss likewise).
        'critic_loss': 'critic/loss',
        'q_mean': 'critic/q1_mean',  # Care: the released q_mean is of the first head only (q1.mean(), l.246)
        'bc_flow_var': 'vgf/bc_var',  # variance over the BC particles from s' (ddof 1), averaged (l.251)
        'vgf_var': 'vgf/var',  # the same after L_train flow steps (l.252)
        'bc_loss': 'actor/bc_flow_loss',  # flow matching of the BC policy (l.274)
    },
    # One lr on tiltbench, the released critic's value_lr and BC policy's actor_lr (create, l.433, l.444)
    derived={'value_lr': (('lr',), lambda c: c.lr), 'actor_lr': (('lr',), lambda c: c.lr)},
    fixed={
        'critic_loss': 'td',  # tiltbench's TD loss (the released 'sql-q' / 'iql-q' have no tiltbench counterpart)
        'bc_policy_type': 'flow',  # tiltbench's BC policy is the flow
    },
    allowed={
        'q_agg': (('mean', 'min'), "train_q_agg: min if 'min' else mean (l.222-225)"),
        'grad_q_agg': (('mean', 'min'), "vgf_q_agg: min if 'min' else mean (SVGD_VGF.phi, l.125)"),
        'train_select': (('mean', 'max'), "train_particle_select: max if 'max' else mean (l.229-232)"),
        'eval_select': (('max', 'random'), 'eval_particle_select: max, softmax or random (l.334-341)'),
        'num_critics': ((2,), 'its critic has num_ensembles=2 (create, l.440)'),
        'grad_clip_norm': ((0.0,), 'its optimizers are optax.adam without clipping (create, l.433, l.444)'),
        'grad_clip_value': ((0.0,), 'its optimizers are optax.adam without clipping (create, l.433, l.444)'),
        'ln_first': ((True,), 'its MLP puts LayerNorm before the activation (utils/networks.py MLP, ln_first=True)'),
        'particle_optimizer': (('adam',), 'the particles move by optax.adam (l.208)'),
        'bandwidth': ((0.0,), 'its kernel bandwidth is the median heuristic only (rbf_kernel with sigma=None, l.133)'),
        'maxent': ((True,), 'its flow is the MaxEnt form, grad Q / alpha plus repulsion (l.142)'),
        'bandwidth_grad': ((True,), 'jax.grad differentiates the median bandwidth too (sum_K, l.137-139)'),
        'grad_net': ((False,), 'the learned gradient field is the separate agents/a_vgf.py, not mapped here'),
        'normalize_r': (
            (False,),
            'its --normalize_r scales D4RL rewards only (envs/env_utils.py l.134-141); the harness runs OGBench',
        ),
        'target_from_old_params': _OLD_PARAMS,
        'horizon_length': _NO_CHUNKS,
        'test_vgf_steps': (
            lambda v: set(v if isinstance(v, (tuple, list)) else (v,)) <= set(VGF_TEST_STEPS),
            f'its main.py evaluates L_test in {VGF_TEST_STEPS} only (main.py l.269)',
        ),
    },
    # Which L_test tiltbench evaluates and which is its primary score: the released main.py evaluates all four.
    tiltbench_only=('test_vgf_steps', 'primary_test_steps'),
    unused={
        **_UNUSED,
        'rho': "acts only with q_agg / grad_q_agg = 'pessimistic', which the released code cannot express",
        'normalize_r_scale': 'acts only with normalize_r, which stays off here',
        'explore_vgf_steps': 'acts on online exploration only (the released online actions use 0 flow steps)',
    },
)


# seohongpark/fql @ 719d044, agents/ifql.py (the file tiltbench's ifql defaults reproduce). Line numbers of that file.
_IFQL_FQL = Mapping(
    'agents/ifql.py',
    keys={k: k for k in _COMMON_KEYS + ['expectile', 'num_samples', 'flow_steps']},
    metrics={
        'value/value_loss': 'value/loss',  # expectile regression onto min(q1, q2) of the target critic (l.31-43)
        'value/v_mean': 'value/v_mean',
        'value/v_max': 'value/v_max',
        'value/v_min': 'value/v_min',
        'critic/critic_loss': 'critic/loss',  # ((q1 - y)^2 + (q2 - y)^2).mean() (l.51)
        'critic/q_mean': 'critic/target_mean',  # the released q_mean / q_max / q_min are of the TD target y (l.55-57)
        'critic/q_max': 'critic/target_max',
        'critic/q_min': 'critic/target_min',
        'actor/actor_loss': 'actor/loss',  # BC flow matching (l.60-77)
    },
    allowed={
        'q_agg': (('min',), 'its value target is min(q1, q2) of the target critic (value_loss, l.33-34)'),
        'critic_head_reduction': (('sum',), 'its critic loss is ((q1 - y)^2 + (q2 - y)^2).mean() (critic_loss, l.51)'),
        'num_critics': ((2,), 'its critic has two heads, q1 and q2 (create, l.194-199)'),
        'grad_clip_norm': ((0.0,), 'its optimizer is optax.adam without clipping (create, l.220)'),
        'grad_clip_value': ((0.0,), 'its optimizer is optax.adam without clipping (create, l.220)'),
        'target_from_old_params': _OLD_PARAMS,
        'horizon_length': _NO_CHUNKS,
    },
    unused={
        **_UNUSED,
        'rho': "acts only with q_agg='pessimistic', which the released file cannot express",
        'mask_value_loss': 'acts only with action chunks (horizon_length > 1), which the harness does not compare',
    },
)

# ColinQiyangLi/qam @ f93efd2, agents/fawac.py. Line numbers of that file.
_FAWAC_QAM = Mapping(
    'agents/fawac.py',
    # QAM's shared keys, same meaning in agents/fawac.py (value_layer_norm: critic and V, create l.172-180; rho:
    # critic_loss l.29; inv_temp: min(exp(inv_temp (mean_k Q - V)), 100), actor_loss l.67-70); it has no residual
    # field or target actor.
    keys={k: v for k, v in _QAM_KEYS.items() if k not in ('residual', 'bc_flow_target')},
    metrics={
        'critic/critic_loss': 'critic/loss',  # mean over heads and batch (l.35)
        'critic/value_loss': 'value/loss',  # V onto every target head at the data action (l.37-39)
        'critic/q_mean': 'critic/q_mean',
        'critic/q_max': 'critic/q_max',
        'critic/q_min': 'critic/q_min',
        'actor/actor_loss': 'actor/loss',  # advantage-weighted flow matching (l.73)
    },
    fixed=dict(_QAM_FIXED),
    allowed={
        'q_agg': (('pessimistic',), 'its critic target is always mean - rho * std over the heads (critic_loss, l.29)'),
        'value_target': (
            ('critic',),
            "its V regresses onto the target critic at the data action (l.37-39); 'td' is the QAM paper's Eq. (76)",
        ),
        'grad_clip_norm': ((0.0,), 'its optimizer is optax.adam without clipping (create, l.199)'),
        'grad_clip_value': ((0.0,), 'its optimizer is optax.adam without clipping (create, l.199)'),
        'target_from_old_params': _OLD_PARAMS,
        'horizon_length': _NO_CHUNKS,
    },
    unused=dict(_UNUSED),
)


def _vgf_eval_columns(config):
    """tiltbench's primary score (L_test = primary_test_steps) and its other L_test columns ('L2/score'), against the
    released evaluation_{L}/success (main.py l.269-284)."""
    from agents.vgf import l_test_values, primary_test_steps

    primary = primary_test_steps(config)
    cols = {SCORE: f'evaluation_{primary}/success'}
    cols.update({f'L{s}/{SCORE}': f'evaluation_{s}/success' for s in l_test_values(config) if s != primary})
    return cols


REPOS = {
    'fql': Repo(
        'fql',
        'seohongpark/fql',
        ('agents/fql.py',),
        {**{a: Mapping(*AGENT_MAP[a], classified=False) for a in AGENT_MAP}, 'ifql': _IFQL_FQL},
        eval_columns=lambda config: {SCORE: 'evaluation/success'},
    ),
    'qam': Repo(
        'qam',
        'ColinQiyangLi/qam',
        ('agents/qam.py', 'agents/bam.py'),
        {
            'qam': _qam_mapping('qam'),
            'qam_fql': _qam_mapping('fql'),
            'qam_edit': _qam_mapping('edit'),
            'qam_fav': _qam_mapping('qam'),  # plain QAM with the FAV paper's 2-head critic: the same released file
            'fawac': _FAWAC_QAM,
        },
        # online_steps defaults to 500000 (main.py l.25); horizon_length to 5 (l.44): 1 = no chunking, the one-step
        # TD target of tiltbench's QAM (main.py l.109, l.223; agents/qam.py l.35-36 with discount ** 1).
        main_flags=('--online_steps=0', '--horizon_length=1'),
        # <save_dir>/<project>/<run_group>/<env_name>/<hash>/offline_agent.csv and eval.csv (main.py l.75, l.161):
        # the info dict's names without a prefix, no time column, the evaluation's flattened info ('success').
        train_file='offline_agent.csv',
        train_prefix='',
        time_column=None,
        eval_columns=lambda config: {SCORE: 'success'},
        launcher=QAM_LAUNCHER,
    ),
    'fav': Repo(
        'fav',
        'Jaewoopudding/FAV (fav-offrl/)',
        ('agents/fav.py', 'agents/sac.py'),
        {'fav': _FAV, 'fav_adaptive': _FAV},
        subdir='fav-offrl',
        main_flags=('--online_steps=0',),  # its default (main.py l.31), said explicitly
        # <save_dir>/<project>/<run_group>/<exp>/train.csv (training/..., time/epoch_time) and eval.csv
        # (evaluation/success), as the FQL code base (main.py l.65, l.118-119, l.190-216).
        eval_columns=lambda config: {SCORE: 'evaluation/success'},
    ),
    'vgf': Repo(
        'vgf',
        'ryanxhr/vgf',
        ('agents/vgf.py', 'agents/a_vgf.py'),
        {'vgf': _VGF},
        # --normalize_r stays 0 (its default, main.py l.48): see normalize_r above. Its main.py reads
        # --env_name=<source>:<name> (l.72); 'ogbench:' for the OGBench datasets in ~/.ogbench/data.
        main_flags=('--online_steps=0', '--normalize_r=0'),
        env_prefix='ogbench:',
        # <save_dir>/<project>/<run_group>/<exp>/train.csv (training/<info key>, time/epoch_time) and eval.csv with
        # one evaluation_{L}/... group per L_test (main.py l.59, l.151-152, l.251-284).
        eval_columns=_vgf_eval_columns,
    ),
}


def main_dir(repo: str, path: str) -> str:
    """The folder of the released main.py: the checkout, or its `subdir` (FAV's fav-offrl/) when it has one."""
    sub = REPOS[repo].subdir
    return os.path.join(path, sub) if sub and os.path.isdir(os.path.join(path, sub)) else path


def infer_repo(path: str | None) -> str:
    """The repository kind of a checkout (or of its main.py's folder), from the files only it has; 'fql' without a
    checkout (as before there was a choice; also for a compare phase whose --released is not on this machine)."""
    if not path or not os.path.isdir(path):
        return 'fql'
    for name in ('qam', 'fav', 'vgf', 'fql'):  # every one has agents/fql.py but the last
        if all(os.path.exists(os.path.join(main_dir(name, path), m)) for m in REPOS[name].markers):
            return name
    raise ValueError(f'{path} is none of the known released repositories ({", ".join(REPOS)}): pass --released_repo')


def released_mapping(repo: str, agent: str, config=None) -> Mapping:
    """The Mapping of `agent` in `repo` for this config (default: tiltbench's default config)."""
    spec = REPOS[repo].agents.get(agent)
    if spec is None:
        raise ValueError(
            f'no flag mapping for {agent!r} in {REPOS[repo].title}; mapped agents: {", ".join(REPOS[repo].agents)}'
        )
    if isinstance(spec, Mapping):
        return spec
    return spec(config if config is not None else tiltbench_config(agent, {}))


def check_expressible(repo: str, agent: str, config) -> Mapping:
    """The Mapping of this config, or a ValueError naming the key the released code cannot express (or a tiltbench
    key with no decision, or one that would not reach tiltbench's command)."""
    mapping = released_mapping(repo, agent, config)
    if not mapping.classified:
        return mapping
    passed = set(mapping.tiltbench_keys())
    known = passed | set(mapping.allowed) | set(mapping.unused)
    unplaced = sorted(set(config) - known)
    if unplaced:
        raise ValueError(
            f'{agent}: tiltbench config keys {unplaced} have no decision in the {REPOS[repo].title} mapping '
            '(scripts/parity.py: map them, fix them, or say why they do not act)'
        )
    for key, (allowed, why) in mapping.allowed.items():
        ok = allowed(config[key]) if callable(allowed) else config[key] in allowed
        if not ok:
            raise _not_expressible(agent, key, config[key], why)
    default = tiltbench_config(agent, {})
    for key in sorted(set(config) - passed):
        if config[key] != default[key]:
            why = mapping.unused.get(key, 'it is not passed to either side')
            raise ValueError(
                f'{agent}: {key}={config[key]!r} is not compared by the harness ({why}); leave it at {default[key]!r}'
            )
    return mapping


# ---- configs and commands -----------------------------------------------------------------------------------------
def tiltbench_config(agent: str, overrides: dict):
    """tiltbench's default config of `agent` with `overrides` (config key -> value) applied and checked."""
    import agents

    config = agents.get_config(agent)
    for k, v in overrides.items():
        if k not in config:
            raise ValueError(f'Unknown config key {k!r} for agent {agent!r}. Valid keys: {", ".join(sorted(config))}.')
        with config.unlocked():
            config[k] = type(config[k])(v) if isinstance(config[k], (bool, int, float, str)) else v
    return config


def flag_value(v) -> str:
    if isinstance(v, (tuple, list)):
        return '(' + ','.join(str(x) for x in v) + (',)' if len(v) == 1 else ')')
    return str(v)


def agent_flags(agent: str, config, released: bool, repo: str = 'fql') -> list[str]:
    """--agent.KEY=VALUE for every mapped key, with tiltbench's resolved value, in either side's key names; on the
    released side also the derived keys (tiltbench's values re-encoded) and the fixed ones."""
    mapping = released_mapping(repo, agent, config)
    if not released:
        return [f'--agent.{k}={flag_value(config[k])}' for k in mapping.tiltbench_keys()]
    flags = [f'--agent.{rk}={flag_value(config[k])}' for k, rk in mapping.keys.items()]
    flags += [f'--agent.{rk}={flag_value(fn(config))}' for rk, (_, fn) in mapping.derived.items()]
    return flags + [f'--agent.{rk}={flag_value(v)}' for rk, v in mapping.fixed.items()]


def _repo(args) -> str:
    return getattr(args, 'released_repo', 'fql')


def released_command(args, agent: str, config, seed: int) -> list[str]:
    repo = REPOS[_repo(args)]
    cfg_file = released_mapping(repo.name, agent, config).cfg_file
    return [
        args.released_python,
        '-c',
        repo.launcher,
        f'--env_name={repo.env_prefix}{args.env_name}',
        f'--seed={seed}',
        f'--offline_steps={args.steps}',
        f'--log_interval={args.log_interval}',
        f'--eval_interval={args.eval_interval}',
        f'--eval_episodes={args.eval_episodes}',
        f'--save_interval={10 * args.steps}',
        f'--save_dir={os.path.abspath(side_dir(args, "released", agent, seed))}',
        *repo.main_flags,
        f'--agent={cfg_file}',
        *agent_flags(agent, config, released=True, repo=repo.name),
    ]


def tiltbench_command(args, agent: str, config) -> list[str]:
    return [
        sys.executable,
        os.path.join(ROOT, 'main.py'),
        f'--agent={agent}',
        f'--env_name={args.env_name}',
        f'--seed={args.seed0}',
        f'--num_seeds={args.seeds}',
        f'--offline_steps={args.steps}',
        f'--log_interval={args.log_interval}',
        f'--eval_interval={args.eval_interval}',
        f'--eval_episodes={args.eval_episodes}',
        f'--save_interval={args.steps}',
        f'--updates_per_call={args.updates_per_call}',
        '--train_metrics=step',
        '--generate=false',
        '--progress=false',
        f'--save_dir={os.path.abspath(os.path.join(args.out, "tiltbench"))}',
        f'--run_name={agent}',
        *agent_flags(agent, config, released=False, repo=_repo(args)),
        *args.tiltbench_flag,
    ]


def side_dir(args, side: str, agent: str, seed: int) -> str:
    return os.path.join(args.out, side, agent, f'seed{seed}')


# ---- reading logs (both sides in tiltbench's metric names) --------------------------------------------------------
def _rows(path: str) -> list[dict]:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def _float(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_released(run_dir: str, agent: str, repo: str = 'fql', config=None) -> dict | None:
    """{'train': {step: {metric: v}}, 'eval': {step: score}, 'evals': {step: {eval metric: v}}, 'ms': [ms per update
    per interval]} of one released run in tiltbench's names (its save_dir holds <project>/<group>/.../<exp>/), or
    None when it has not written logs. `config` (tiltbench's; default: its defaults) picks the released agent file
    and VGF's primary L_test."""
    spec = REPOS[repo]
    found = sorted(glob.glob(os.path.join(run_dir, '**', spec.train_file), recursive=True))
    if not found:
        return None
    exp = os.path.dirname(found[-1])
    if config is None and repo != 'fql':
        config = tiltbench_config(agent, {})
    names = released_mapping(repo, agent, config).metrics
    pre = spec.train_prefix
    train, ms = {}, {}
    for r in _rows(os.path.join(exp, spec.train_file)):
        step = int(float(r['step']))
        train[step] = {names[k]: _float(r[f'{pre}{k}']) for k in names if f'{pre}{k}' in r}
        if spec.time_column and _float(r.get(spec.time_column)) is not None:
            ms[step] = 1000.0 * float(r[spec.time_column])
    columns = spec.eval_columns(config)
    ev, evals = {}, {}
    if os.path.exists(os.path.join(exp, spec.eval_file)):
        for r in _rows(os.path.join(exp, spec.eval_file)):
            step = int(float(r['step']))
            ev[step] = 100.0 * float(r[columns[SCORE]])
            extra = {m: _float(r.get(c)) for m, c in columns.items() if m != SCORE}
            evals[step] = {m: 100.0 * v for m, v in extra.items() if v is not None}
    return {'train': train, 'eval': ev, 'evals': evals, 'ms': ms}


def read_tiltbench(run_dir: str, agent: str, num_seeds_in_process: int = 1, metrics=None) -> dict | None:
    """One tiltbench run's logs, as read_released; `metrics` (default: the FQL repository's names for its agents,
    else every column) selects the train.csv columns."""
    if not os.path.exists(os.path.join(run_dir, 'train.csv')):
        return None
    if metrics is not None:
        names = set(metrics)
    else:
        names = set(AGENT_MAP[agent][2].values()) if agent in AGENT_MAP else None
    train, ms, last = {}, {}, None
    for r in _rows(os.path.join(run_dir, 'train.csv')):
        if r.get('phase', 'offline') != 'offline':
            continue
        step = int(float(r['step']))
        train[step] = {k: _float(v) for k, v in r.items() if (names is None or k in names) and k not in ('step',)}
        t = _float(r.get('time'))
        if last is not None and t is not None:
            ms[step] = 1000.0 * (t - last[1]) / (step - last[0]) / num_seeds_in_process
        last = (step, t) if t is not None else None
    ev, evals = {}, {}
    if os.path.exists(os.path.join(run_dir, 'eval.csv')):
        for r in _rows(os.path.join(run_dir, 'eval.csv')):
            step = int(float(r['step']))
            ev[step] = float(r[SCORE])
            # the labeled evaluation variants' scores (VGF: 'L0/score', ...)
            evals[step] = {k: _float(v) for k, v in r.items() if k.endswith(f'/{SCORE}') and _float(v) is not None}
    return {'train': train, 'eval': ev, 'evals': evals, 'ms': ms}


# ---- statistics ---------------------------------------------------------------------------------------------------
def mean_ci(x) -> tuple[float, float]:
    """Mean and the half-width of its 95% t interval."""
    from scipy import stats

    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return float(x.mean()), float('nan')
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def diff_ci(a, b) -> tuple[float, float, float]:
    """Welch's 95% CI of mean(a) - mean(b): (difference, low, high)."""
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a.mean() - b.mean()
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return float(d), float(d), float(d)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    h = stats.t.ppf(0.975, dof) * se
    return float(d), float(d - h), float(d + h)


def spread_test(a, b) -> tuple[float, bool]:
    """Ratio of the seed-to-seed standard deviations std(a)/std(b) and whether the two-sided 95% F test of equal
    variances rejects."""
    from scipy import stats

    sa, sb = np.std(a, ddof=1), np.std(b, ddof=1)
    if sa == 0.0 and sb == 0.0:
        return 1.0, False
    if sb == 0.0 or sa == 0.0:
        return (float('inf') if sb == 0.0 else 0.0), True
    f = (sa / sb) ** 2
    lo, hi = stats.f.ppf([0.025, 0.975], len(a) - 1, len(b) - 1)
    return float(sa / sb), bool(f < lo or f > hi)


def compare(side_a: list[dict], side_b: list[dict], metrics: list[str], eval_metrics=()) -> dict:
    """Compare two sides (lists of per-seed logs in tiltbench names). Returns {'rows': per (metric, step), 'ms': ...}.
    Steps are those logged by every seed of both sides. `eval_metrics`: further evaluation columns (run['evals'],
    e.g. VGF's 'L0/score'), after the primary score."""
    rows = []
    for m in list(metrics) + [SCORE] + list(eval_metrics):
        key = 'eval' if m == SCORE else 'evals' if m in eval_metrics else 'train'

        def values(side, step, key=key, m=m):
            out = []
            for run in side:
                v = run.get(key, {}).get(step)
                v = v if key == 'eval' else (v or {}).get(m)
                out.append(v)
            return out

        steps = set.intersection(*[set(r.get(key, {})) for r in side_a + side_b]) if side_a and side_b else set()
        for step in sorted(steps):
            a, b = values(side_a, step), values(side_b, step)
            if any(v is None for v in a + b):
                continue
            (ma, ha), (mb, hb) = mean_ci(a), mean_ci(b)
            d, lo, hi = diff_ci(a, b)
            ratio, spread_differs = spread_test(a, b)
            rows.append(
                dict(
                    metric=m,
                    step=step,
                    a_mean=ma,
                    a_ci=ha,
                    b_mean=mb,
                    b_ci=hb,
                    diff=d,
                    diff_lo=lo,
                    diff_hi=hi,
                    indistinguishable=bool(lo <= 0.0 <= hi),
                    a_below_every_seed=bool(max(a) < min(b)),
                    a_above_every_seed=bool(min(a) > max(b)),
                    std_ratio=ratio,
                    spread_differs=spread_differs,
                )
            )

    def ms(side):
        vals = [v for run in side for s, v in run['ms'].items() if s not in run['eval']]
        return float(np.median(vals)) if vals else float('nan')

    return {'rows': rows, 'ms_a': ms(side_a), 'ms_b': ms(side_b)}


# ---- running ------------------------------------------------------------------------------------------------------
def _finished_released(args, agent, seed, config=None) -> bool:
    r = read_released(side_dir(args, 'released', agent, seed), agent, _repo(args), config)
    return r is not None and args.steps in r['eval']


def _finished_tiltbench(args, agent) -> bool:
    return all(os.path.exists(os.path.join(p, 'final.json')) for p in tiltbench_dirs(args, agent))


def _run(cmd: list[str], cwd: str, log_path: str, env: dict) -> None:
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, 'w') as log:
        log.write(shlex.join(cmd) + '\n')
        log.flush()
        t = time.time()
        proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f'command failed ({proc.returncode}), see {log_path}:\n{shlex.join(cmd)}')
    print(f'  done in {time.time() - t:.0f}s ({log_path})', flush=True)


def tiltbench_dirs(args, agent) -> list[str]:
    base = os.path.join(args.out, 'tiltbench')
    if args.seeds == 1:
        return [os.path.join(base, agent)]
    return [os.path.join(base, f'{agent}_seed{args.seed0 + k}') for k in range(args.seeds)]


def run_sides(args, agent: str, config) -> None:
    pin = ['taskset', '-c', args.cpu] if args.cpu else []
    if 'released' in args.sides:
        env = dict(os.environ)
        env.setdefault('MUJOCO_GL', 'egl')
        env.pop('PYTHONPATH', None)
        for k in range(args.seeds):
            seed = args.seed0 + k
            if _finished_released(args, agent, seed, config):
                continue
            print(f'[parity] released {agent} seed {seed}', flush=True)
            _run(
                pin + released_command(args, agent, config, seed),
                main_dir(_repo(args), args.released),
                os.path.join(side_dir(args, 'released', agent, seed), 'stdout.log'),
                env,
            )
    if 'tiltbench' in args.sides and not _finished_tiltbench(args, agent):
        print(f'[parity] tiltbench {agent} seeds {args.seed0}..{args.seed0 + args.seeds - 1}', flush=True)
        cmd = tiltbench_command(args, agent, config)
        if os.path.exists(tiltbench_dirs(args, agent)[0]):
            cmd.append('--resume')
        _run(pin + cmd, ROOT, os.path.join(args.out, 'tiltbench', f'{agent}.log'), dict(os.environ))


def load_sides(args, agent: str, config=None) -> tuple[list[dict], list[dict]]:
    repo = _repo(args)
    released = [
        read_released(side_dir(args, 'released', agent, args.seed0 + k), agent, repo, config) for k in range(args.seeds)
    ]
    metrics = released_mapping(repo, agent, config).metrics.values()
    tilt = [read_tiltbench(d, agent, args.seeds, metrics) for d in tiltbench_dirs(args, agent)]
    return [r for r in tilt if r], [r for r in released if r]


# ---- the table ----------------------------------------------------------------------------------------------------
def _fmt(x: float, h: float | None = None) -> str:
    if x is None or not math.isfinite(x):
        return 'n/a'
    digits = 4 if abs(x) < 10 else 2
    return f'{x:.{digits}f}' if h is None else f'{x:.{digits}f} ± {h:.{digits}f}'


def table_section(agent: str, result: dict, n_a: int, n_b: int, names=('tiltbench', 'released')) -> str:
    rows = result['rows']
    if not rows:
        return f'### {agent}\n\nNo matched steps (a side has no logs).\n'
    last = {}
    for r in rows:
        last[r['metric']] = r  # rows are sorted by step within a metric
    out = [
        f'### {agent}',
        '',
        f'ms per update: {names[0]} {_fmt(result["ms_a"])}, {names[1]} {_fmt(result["ms_b"])} '
        f'(median over log intervals without an evaluation). Seeds: {n_a} / {n_b}.',
        '',
        f'| metric | step | {names[0]} (mean ± 95% CI) | {names[1]} | difference [95% CI] | verdict | '
        'steps indistinguishable | std ratio | spread |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for m, r in last.items():
        per = [x for x in rows if x['metric'] == m]
        n_ok = sum(x['indistinguishable'] for x in per)
        below = sum(x['a_below_every_seed'] for x in per)
        above = sum(x['a_above_every_seed'] for x in per)
        side = f'; {names[0]} below every seed at {below}' if below else ''
        side += f'; above every seed at {above}' if above else ''
        verdict = 'indistinguishable' if r['indistinguishable'] else '**differs**'
        out.append(
            f'| {m} | {r["step"]} | {_fmt(r["a_mean"], r["a_ci"])} | {_fmt(r["b_mean"], r["b_ci"])} | '
            f'{_fmt(r["diff"])} [{_fmt(r["diff_lo"])}, {_fmt(r["diff_hi"])}] | {verdict} | {n_ok}/{len(per)}{side} | '
            f'{_fmt(r["std_ratio"])} | {"**differs**" if r["spread_differs"] else "same"} |'
        )
    return '\n'.join(out) + '\n'


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()[:16]


def dataset_files(env_name: str) -> list[str]:
    from envs.ogbench_gen import dataset_name_for

    base = os.path.expanduser(os.path.join('~/.ogbench/data', dataset_name_for(env_name)))
    return [base + '.npz', base + '-val.npz']


def tiltbench_heap(dirs: list[str]) -> str:
    """The GLIBC_TUNABLES each tiltbench run recorded in its final.json (main.py turns on huge pages for glibc's heap
    where it helps, runner/hugepages.py): the heap the side's ms per update was measured on."""
    return _recorded(dirs, 'final.json', lambda d: d.get('glibc_tunables'), lambda v: f'`{v}`' if v else 'unset')


def tiltbench_calls(dirs: list[str]) -> str:
    """The gradient steps per jitted call and the train.csv metrics each tiltbench run recorded in its config.json:
    the calls its ms per update was measured on (rows are the logged step's own with train_metrics=step)."""

    def get(d):
        f = d.get('flags', {})
        return (f['updates_per_call'], f.get('train_metrics', 'chunk_mean')) if 'updates_per_call' in f else None

    return _recorded(dirs, 'config.json', get, lambda v: f'`--updates_per_call={v[0]} --train_metrics={v[1]}`')


def _recorded(dirs: list[str], name: str, get, label) -> str:
    """One value read from each run directory's JSON file `name`, as one label, or one label per group of runs."""
    seen = {}
    for d in dirs:
        try:
            with open(os.path.join(d, name)) as f:
                v = get(json.load(f))
        except (OSError, ValueError):
            continue
        seen.setdefault('not recorded' if v is None else label(v), []).append(os.path.basename(d))
    if len(seen) == 1:
        return next(iter(seen))
    return '; '.join(f'{text} ({", ".join(names)})' for text, names in seen.items())


def released_commit(path: str) -> str:
    try:
        return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=path, capture_output=True, text=True).stdout.strip()
    except OSError:
        return 'unknown'


def released_versions(python: str) -> str:
    """The versions of the packages that decide the released side's numerics (they matter: see fql_repo.md)."""
    code = (
        'import importlib.metadata as m\n'
        "print(', '.join(f'{p} {m.version(p)}' for p in ('jax', 'flax', 'optax', 'distrax', 'numpy', 'ogbench')))"
    )
    try:
        out = subprocess.run([python, '-c', code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return 'unknown'
    return out.stdout.strip() or 'unknown'


def _literal(v: str):
    """A --set value: a Python literal (3, 0.1, True, (256, 256)) or else the string itself ('min')."""
    import ast

    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--released', help='Checkout of the released repository (e.g. seohongpark/fql).')
    p.add_argument('--released_python', help='A Python that can run the released code (its own virtualenv).')
    p.add_argument(
        '--released_repo',
        choices=('auto', *REPOS),
        default='auto',
        help="Which released repository's conventions (main.py flags, agent files, logs): "
        + ', '.join(f'{k} = {v.title}' for k, v in REPOS.items())
        + '. auto: from the files of --released (fql without it).',
    )
    p.add_argument(
        '--agents', default=None, help="Default: the repository's mapped agents but qam_fav (fql: fql,iql,rebrac,ifql)."
    )
    p.add_argument('--env_name', default='pointmaze-medium-navigate-singletask-task1-v0')
    p.add_argument('--seeds', type=int, default=4)
    p.add_argument('--seed0', type=int, default=0)
    p.add_argument('--steps', type=int, default=10_000)
    p.add_argument('--log_interval', type=int, default=1000)
    p.add_argument('--eval_interval', type=int, default=5000)
    p.add_argument('--eval_episodes', type=int, default=50)
    p.add_argument('--hidden', default='256,256', help='Hidden sizes of every network, both sides.')
    p.add_argument(
        '--updates_per_call',
        type=int,
        default=1,
        help='tiltbench side: gradient steps fused into one jitted call (its rows stay those of the logged step).',
    )
    p.add_argument('--set', action='append', default=[], help='AGENT:KEY=VALUE config override, both sides.')
    p.add_argument('--tiltbench_flag', action='append', default=[], help='Extra flag for tiltbench main.py only.')
    p.add_argument('--sides', default='released,tiltbench')
    p.add_argument('--cpu', default='', help='Pin every run to these CPUs (taskset -c), e.g. 1.')
    p.add_argument('--phase', choices=('all', 'run', 'compare'), default='all')
    p.add_argument('--out', default='runs/parity')
    p.add_argument('--table', default=None, help='Write the Markdown table here (default: OUT/parity.md).')
    p.add_argument('--notes', default=None, help='A Markdown file appended to the table (findings, caveats).')
    args = p.parse_args(argv)
    args.sides = args.sides.split(',')
    if args.released_repo == 'auto':
        try:
            args.released_repo = infer_repo(args.released)
        except ValueError as e:
            p.error(str(e))
    repo = REPOS[args.released_repo]
    mapped = repo.agents
    agents_ = (args.agents or ','.join(a for a in mapped if a != 'qam_fav')).split(',')
    unknown = [a for a in agents_ if a not in mapped]
    if unknown:
        p.error(f'no flag mapping for {unknown} in {repo.title}; mapped agents: {", ".join(mapped)}')
    if args.phase != 'compare' and 'released' in args.sides and not (args.released and args.released_python):
        p.error('--released and --released_python are needed to run the released side')
    hidden = tuple(int(x) for x in args.hidden.split(','))
    overrides = {a: {'actor_hidden_dims': hidden, 'value_hidden_dims': hidden} for a in agents_}
    for s in args.set:
        agent, kv = s.split(':', 1)
        k, v = kv.split('=', 1)
        if agent not in mapped:
            p.error(f'--set {s}: no flag mapping for {agent!r}; mapped agents: {", ".join(mapped)}')
        if agent in overrides:  # a --set for an agent not in --agents is kept out, so one command line serves all
            overrides[agent][k] = _literal(v)
    configs = {a: tiltbench_config(a, overrides[a]) for a in agents_}
    for a in agents_:  # a config the released code cannot run is refused before anything runs
        try:
            check_expressible(repo.name, a, configs[a])
        except ValueError as e:
            p.error(str(e))

    if args.phase in ('all', 'run'):
        for a in agents_:
            run_sides(args, a, configs[a])

    sections, summary = [], {}
    for a in agents_:
        tilt, rel = load_sides(args, a, configs[a])
        metrics = list(released_mapping(repo.name, a, configs[a]).metrics.values())
        extra = [m for m in repo.eval_columns(configs[a]) if m != SCORE]
        result = compare(tilt, rel, metrics, extra)
        summary[a] = result
        sections.append(table_section(a, result, len(tilt), len(rel)))
    header = [
        '# Parity: tiltbench vs the released code',
        '',
        f'Made by `python scripts/parity.py {shlex.join(argv if argv is not None else sys.argv[1:])}`.',
        '',
        f'- Task `{args.env_name}`, {args.steps} offline steps, seeds {args.seed0}..{args.seed0 + args.seeds - 1} '
        f'per side, networks {hidden}, metrics at every {args.log_interval} steps (one gradient step each), '
        f'{args.eval_episodes} evaluation episodes every {args.eval_interval} steps.',
    ]
    if args.released:
        header.append(
            f'- Released code: `{args.released}` at commit {released_commit(args.released)}, run unedited through a '
            "launcher that sets wandb.init(mode='disabled') (its wandb needs a network), MUJOCO_GL=egl."
        )
    if repo.name != 'fql':
        header.append(
            f'- Released repository: {repo.title} (`--released_repo={repo.name}`); fixed main.py flags '
            f'`{" ".join(repo.main_flags) or "none"}`'
            + ('; its main.py logs no time, so its ms per update is n/a.' if repo.time_column is None else '.')
        )
    if args.released_python:
        versions = released_versions(args.released_python)
        header.append(f"- Released side's packages (`{args.released_python}`): {versions}")
    try:
        files = dataset_files(args.env_name)
        header.append('- Data (both sides): ' + ', '.join(f'`{os.path.basename(f)}` sha256 {sha256(f)}' for f in files))
    except (OSError, ValueError):
        pass
    dirs = [d for a in agents_ for d in tiltbench_dirs(args, a)]
    if heap := tiltbench_heap(dirs):
        header.append(f"- tiltbench side's GLIBC_TUNABLES (its final.json): {heap}")
    if calls := tiltbench_calls(dirs):
        header.append(f"- tiltbench side's calls (its config.json): {calls}")
    for a in agents_:
        if repo.name == 'fql':
            header.append(f'- `{a}` flags (both sides): `{" ".join(agent_flags(a, configs[a], released=False))}`')
            continue
        ours = ' '.join(agent_flags(a, configs[a], released=False, repo=repo.name))
        theirs = ' '.join(agent_flags(a, configs[a], released=True, repo=repo.name))
        cfg_file = released_mapping(repo.name, a, configs[a]).cfg_file
        header.append(f'- `{a}` flags: tiltbench `{ours}`; released `--agent={cfg_file} {theirs}`')
    header += [
        '',
        'Verdict at the last logged step: indistinguishable when the 95% CI of the difference (Welch) holds 0. '
        '"steps indistinguishable" counts every logged step (at 95% about 1 in 20 is flagged by chance). '
        'std ratio = tiltbench / released seed-to-seed std; spread: two-sided 95% F test.',
        '',
    ]
    text = '\n'.join(header) + '\n' + '\n'.join(sections)
    if args.notes:
        with open(args.notes) as f:
            text += '\n' + f.read()
    table = args.table or os.path.join(args.out, 'parity.md')
    os.makedirs(os.path.dirname(os.path.abspath(table)), exist_ok=True)
    with open(table, 'w') as f:
        f.write(text)
    with open(os.path.splitext(table)[0] + '.json', 'w') as f:
        json.dump(summary, f, indent=1)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
