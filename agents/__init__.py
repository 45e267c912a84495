"""Agent registry: name -> agent module. main.py has no agent-specific branches.

An agent module defines (the protocol of agents/common/trainer.py):
  get_config() -> ml_collections.ConfigDict          defaults from the paper, a comment on every key
  networks(config, obs_dim, action_dim) -> {name: (flax module, example input shapes)}
  target_networks(config) -> tuple of network names with Polyak targets
  loss(learner, params, state, batch, rng) -> (loss, info)
  sample_actions(learner, params, observations, rng, temperature=1.0, **eval_kwargs) -> actions
optional:
  validate(config)                                    raise ValueError for bad hyperparameters
  PRESETS = {protocol: fn}, PAPER = protocol          per-task values under a paper's protocol (`--preset=fav|qam|
                                                      vgf`; `--preset=paper`: the agent's own paper PAPER).
                                                      fn(env_name[, variant][, setting]) -> dict; a preset that
                                                      differs between offline and offline-to-online runs (the
                                                      released scripts of VGF) takes setting='offline' / 'off2on'
  constants(config, dataset) -> dict                  arrays computed once from the offline data
  target_update_weight(config, step) -> scalar        e.g. ReBRAC's actor delay
  actor_step(config, step) -> bool                    steps that update the actor; the others call
                                                      loss(..., actor=False), which skips the actor's loss
  frozen_on_critic_steps(config) -> tuple of names    networks that those critic-only steps leave untouched,
                                                      Adam state included (then one Adam per network; RLPD)
  eval_variants(config) -> [(label, kwargs)]          several evaluations per eval step (VGF's L_test sweep)
"""

from __future__ import annotations

import difflib
import importlib
import inspect

# name -> (module, config variant passed to get_config, or None)
AGENTS = {
    # the methods the suite compares
    'fav': ('agents.fav', None),
    'fav_adaptive': ('agents.fav', 'adaptive'),
    'qam': ('agents.qam', None),
    'qam_fql': ('agents.qam_fql', None),
    'qam_edit': ('agents.qam_edit', None),
    'qam_fav': ('agents.qam_fav', None),
    'vgf': ('agents.vgf', None),
    # baselines of the FAV, QAM and VGF tables
    'iql': ('agents.iql', None),
    'rebrac': ('agents.rebrac', None),
    'fql': ('agents.fql', None),
    'bc': ('agents.bc', None),
    'bc_flow': ('agents.bc', 'flow'),
    'ifql': ('agents.ifql', None),
    'fawac': ('agents.fawac', None),
    'fbrac': ('agents.fbrac', None),
    'dsrl': ('agents.dsrl', None),
    'fedit': ('agents.fedit', None),
    'cgql': ('agents.cgql', None),
    'cgql_mse': ('agents.cgql', 'mse'),
    'cgql_linex': ('agents.cgql', 'linex'),
    'rlpd': ('agents.rlpd', None),
}


def closest(name: str, valid) -> str:
    match = difflib.get_close_matches(name, list(valid), n=1)
    return f' Did you mean {match[0]!r}?' if match else ''


def check_name(name: str) -> None:
    if name not in AGENTS:
        raise ValueError(f'Unknown agent {name!r}.{closest(name, AGENTS)} Valid agents: {", ".join(sorted(AGENTS))}.')


def get_agent(name: str):
    check_name(name)
    return importlib.import_module(AGENTS[name][0])


def get_config(name: str):
    check_name(name)
    module, variant = AGENTS[name]
    mod = importlib.import_module(module)
    return mod.get_config() if variant is None else mod.get_config(variant)


# Papers whose protocol a preset reproduces: the per-task values and settings their published tables ran with. One
# baseline can have different values in different papers (FQL's alpha on antmaze-large: 10 in FAV Table 6, 3 in
# QAM's reproduce.py), so a preset is named by the paper, not by the agent.
PROTOCOLS = {
    'fav': 'FAV (Tables 6, 11-12; the released fav-offrl commands)',
    'qam': 'QAM Table 1 (experiments/reproduce.py: K = 10 pessimistic critics, chunks of 5 on manipulation, sparse '
    'scene / puzzle)',
    'vgf': 'VGF (Tables 5-6; the released run_scripts)',
}


def protocol_of(name: str, preset: str) -> str | None:
    """The paper protocol that `--preset=preset` means for agent `name` (None for 'default')."""
    if preset == 'default':
        return None
    return importlib.import_module(AGENTS[name][0]).PAPER if preset == 'paper' else preset


def paper_preset(name: str, env_name: str, online: bool = False, protocol: str = 'paper') -> dict:
    """Per-task hyperparameters of agent `name` for `env_name` under `protocol` ('paper' = the agent's own paper;
    the registry's variant is passed on), for an offline run or (`online`) an offline-to-online one where the preset
    tells them apart. Raises ValueError when that paper has no values for the agent."""
    check_name(name)
    module, variant = AGENTS[name]
    mod = importlib.import_module(module)
    protocol = protocol_of(name, protocol)
    if protocol not in PROTOCOLS:
        raise ValueError(f'Unknown preset {protocol!r}; valid: default, paper, {", ".join(PROTOCOLS)}.')
    fn = getattr(mod, 'PRESETS', {}).get(protocol)
    if fn is None:
        have = [n for n in sorted(AGENTS) if protocol in getattr(importlib.import_module(AGENTS[n][0]), 'PRESETS', {})]
        raise ValueError(
            f"Agent {name!r} has no values under the {protocol.upper()} paper's protocol (--preset={protocol}); "
            f'agents that do: {", ".join(have)}.'
        )
    args = (env_name,) if variant is None else (env_name, variant)
    if 'setting' in inspect.signature(fn).parameters:
        return fn(*args, setting='off2on' if online else 'offline')
    return fn(*args)
