"""The one shared, jitted actor-critic trainer.

An agent module supplies only (see agents/__init__.py for the full protocol):
  networks(config, obs_dim, action_dim) -> {name: (flax module, example input shapes)}
  target_networks(config) -> tuple of names that get a Polyak-averaged target copy
  loss(learner, params, state, batch, rng) -> (scalar loss, info dict)
  sample_actions(learner, params, observations, rng, temperature=1.0, **eval_kwargs) -> actions in [-1, 1]
and optionally constants(config, dataset) (non-trainable arrays computed once, e.g. FAV-Adaptive's bandwidth),
target_update_weight(config, step) (e.g. ReBRAC's actor delay) and actor_step(config, step) -> bool: the steps that
update the actor; on the others the trainer calls loss(..., actor=False), which leaves the actor out (compiled as a
lax.cond, so those steps skip the actor's forward and backward passes; a hook that returns a Python bool, the same
on every step, compiles no branch), frozen_on_critic_steps(config) -> tuple of network names: when non-empty, every
network gets its own Adam state (its own step count, as separately built optimizers), and the critic-only steps leave
the named networks' parameters and Adam states as they are (RLPD's code: separate actor and temperature optimizers that
step once per utd_ratio critic steps). Without it, one Adam covers every network and a critic-only step still applies
Adam's momentum to the actor (the released ReBRAC codes, whose actor loss is simply left out on those steps). And
acting_params(config, params, target_params) -> params: the parameters the agent acts with in evaluation and online
(default: the current ones; DSRL and CGQL act through the Polyak target of their flow, as released).

Gradient rule (written once, here): `loss` receives `params`, the parameters being differentiated, and `state`, the
train state before the update. Anything computed from `params` gets gradients; anything computed from
`state.params` (current values, no gradient) or `state.target_params` does not. All networks share one Adam
optimizer over the whole parameter dict (one Adam state per network under frozen_on_critic_steps).

The train state is a pytree and every function here is pure, so `--num_seeds=N` vmaps them over seed-indexed states.
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from agents.common import buffer as buffer_lib


@flax.struct.dataclass
class TrainState:
    params: dict  # {network name: params}, all trainable networks
    target_params: dict  # {network name: params}, Polyak-averaged copies of agent.target_networks(config)
    opt_state: Any
    rng: jax.Array
    step: jax.Array  # number of gradient steps taken (int32)


# What a fused call's metrics are: the mean over its steps, or the last step's own (train_steps).
METRICS = ('chunk_mean', 'step')


def _tree_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


class Learner:
    """Static description of one agent instance: its networks, config, constants and optimizer. Hashable by
    identity, so its methods can be closed over by jax.jit."""

    def __init__(self, agent, config, obs_dim: int, action_dim: int, consts: dict | None = None, oracle_q=None):
        self.agent = agent
        # A task's true Q(s, a) (the tilt bandits' `-oracle` switch, envs/tilt.py): network 'critic' then returns it for
        # every head, so extraction is measured without critic error; the critic's own parameters get no gradient.
        self.oracle_q = oracle_q
        self.config = config
        self.obs_dim = obs_dim
        # The environment's action_dim; the policy and the critic act on chunks of horizon_length of them, flattened
        # (agents/common/buffer.py), so `self.action_dim` is the chunk's dimension.
        self.env_action_dim = action_dim
        self.action_dim = action_dim * config.get('horizon_length', 1)
        self.consts = consts or {}
        self.modules = {}
        self.example_inputs = {}
        for name, (module, shapes) in agent.networks(config, obs_dim, self.action_dim).items():
            self.modules[name] = module
            self.example_inputs[name] = shapes
        self.targets = tuple(agent.target_networks(config))
        # Networks left untouched by critic-only steps; non-empty: one Adam state per network (module docstring).
        self.frozen = tuple(agent.frozen_on_critic_steps(config)) if hasattr(agent, 'frozen_on_critic_steps') else ()
        tx = [optax.adam(learning_rate=config.lr)]
        if config.get('grad_clip_value', 0.0):
            tx.insert(0, optax.clip(config.grad_clip_value))  # element-wise clipping (QAM)
        if config.get('grad_clip_norm', 0.0):
            tx.insert(0, optax.clip_by_global_norm(config.grad_clip_norm))
        self.tx = optax.chain(*tx)

    # ---- network application -------------------------------------------------------------------------------
    def apply(self, name: str, params: dict, *args, **kwargs):
        """Apply network `name` with the parameter dict `params` (trainable, current, or target parameters)."""
        if name == 'critic' and self.oracle_q is not None:
            q = self.oracle_q(*args)
            return jnp.broadcast_to(q, (self.modules['critic'].num_heads, *q.shape))
        return self.modules[name].apply({'params': params[name]}, *args, **kwargs)

    # ---- state ------------------------------------------------------------------------------------------------
    def init(self, rng: jax.Array) -> TrainState:
        rng, *keys = jax.random.split(rng, len(self.modules) + 1)
        params = {}
        for key, (name, module) in zip(keys, self.modules.items()):
            args = [jnp.zeros((1, *s), jnp.float32) for s in self.example_inputs[name]]
            params[name] = module.init(key, *args)['params']
        target_params = {name: params[name] for name in self.targets}
        opt_state = {name: self.tx.init(p) for name, p in params.items()} if self.frozen else self.tx.init(params)
        return TrainState(params, target_params, opt_state, rng, jnp.zeros((), jnp.int32))

    # ---- one gradient step ------------------------------------------------------------------------------------
    def update(self, state: TrainState, batch: dict, step: jax.Array | None = None) -> tuple[TrainState, dict]:
        """One gradient step. `step` = state.step, passed unbatched where seeds are vmapped so that an agent's
        `actor_step` stays a real branch (lax.cond) instead of computing both sides."""
        step = state.step if step is None else step
        pred = self.agent.actor_step(self.config, step) if hasattr(self.agent, 'actor_step') else True
        if isinstance(pred, bool):  # the same on every step (no hook, or one this config turns off): no branch
            return self._step(state, batch, step, {}, None if pred else False)
        # Steps without an actor update compile the critic-only loss (loss(..., actor=False)): the actor's forward and
        # backward passes are skipped, not masked (its gradient is zero either way). Each branch is a whole step
        # (gradients, Adam, targets). Metrics only actor steps compute come back in info['_actor'], zeros on the
        # other steps; _scan averages them over the actor steps.
        shapes = {a: jax.eval_shape(lambda: self._step(state, batch, step, {}, a)[1]) for a in (True, False)}
        only = {k: v for k, v in shapes[True].items() if k not in shapes[False]}
        return jax.lax.cond(
            self.agent.actor_step(self.config, step),
            lambda: self._step(state, batch, step, only, True),
            lambda: self._step(state, batch, step, only, False),
        )

    def _step(self, state, batch, step, only: dict, actor: bool | None = None):
        """The gradient step; `actor` is passed to the agent's loss when not None; the metrics named in `only` are
        moved to info['_actor'] (zeros when this step does not compute them)."""
        rng, loss_rng = jax.random.split(state.rng)

        def loss_fn(params):
            kw = {} if actor is None else {'actor': actor}
            return self.agent.loss(self, params, state, batch, loss_rng, **kw)

        (loss, info), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        if self.frozen:  # one Adam per network; a critic-only step moves neither the frozen networks nor their Adam
            keep = self.frozen if actor is False else ()
            params, opt_state = dict(state.params), dict(state.opt_state)
            for name, p in state.params.items():
                if name not in keep:
                    updates, opt_state[name] = self.tx.update(grads[name], state.opt_state[name], p)
                    params[name] = optax.apply_updates(p, updates)
        else:
            updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        rate = self.config.tau
        if hasattr(self.agent, 'target_update_weight'):
            rate = rate * self.agent.target_update_weight(self.config, step)
        # Polyak step toward the parameters before this update (`target_from_old_params`, the released codes), or
        # toward the updated ones.
        source = state.params if self.config.target_from_old_params else params
        target_params = {
            name: jax.tree_util.tree_map(lambda p, tp: rate * p + (1 - rate) * tp, source[name], tp)
            for name, tp in state.target_params.items()
        }
        info = dict(info)
        info['total_loss'] = loss
        info['grad/norm'] = _tree_norm(grads)
        info['grad/max'] = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree_util.tree_leaves(grads)]))
        info['param/norm'] = _tree_norm(params)
        if only:
            info['_actor'] = {k: info.pop(k) if k in info else jnp.zeros(v.shape, v.dtype) for k, v in only.items()}
        return TrainState(params, target_params, opt_state, rng, state.step + 1), info

    # ---- fused steps: batches sampled on the device, steps wrapped in lax.scan -----------------------------------
    @functools.partial(jax.jit, static_argnums=(0, 3, 4))
    def train_steps(
        self, state: TrainState, buffer: dict, num_steps: int, metrics: str = 'chunk_mean'
    ) -> tuple[TrainState, dict]:
        """`num_steps` gradient steps on batches drawn uniformly from `buffer` (of action chunks with
        horizon_length > 1). Returns the steps' metrics (`metrics`: 'chunk_mean', their mean; 'step', those of the
        last step alone, as the released codes log), plus `finite` (1.0 iff every loss of every step was finite)."""
        return self._scan(state, buffer, num_steps, metrics=metrics)

    def _scan(self, state, buffer, num_steps, step0=None, metrics='chunk_mean'):
        """`step0`: the step count before the first of these steps, unbatched when seeds are vmapped (all seeds share
        it); default state.step."""
        if metrics not in METRICS:
            raise ValueError(f'metrics={metrics!r}: expected one of {METRICS}')
        batch_size = self.config.batch_size
        mix = float(self.config.get('mix_offline', 0.0))
        horizon, discount = self.config.horizon_length, self.config.discount
        step0 = state.step if step0 is None else step0

        def body(st, i):
            rng, batch_rng = jax.random.split(st.rng)
            batch = buffer_lib.sample(buffer, batch_rng, batch_size, mix, horizon, discount)
            st, info = self.update(st.replace(rng=rng), batch, step0 + i)
            return st, info

        state, infos = jax.lax.scan(body, state, jnp.arange(num_steps, dtype=jnp.int32))
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(infos)]))
        actor = infos.pop('_actor', {})
        first = num_steps - 1 if metrics == 'step' else 0  # 'step': the last step's own metrics
        infos, actor = jax.tree_util.tree_map(lambda v: v[first:], (infos, actor))
        info = jax.tree_util.tree_map(lambda v: jnp.mean(v, axis=0), infos)
        if actor:  # metrics of the actor steps only: their mean over those steps (NaN, not logged, if none)
            n = jnp.sum(self.agent.actor_step(self.config, step0 + jnp.arange(first, num_steps, dtype=jnp.int32)))
            info.update(
                {k: jnp.where(n > 0, jnp.sum(v, axis=0) / jnp.maximum(n, 1), jnp.nan) for k, v in actor.items()}
            )
        info['finite'] = finite.astype(jnp.float32)
        return state, info

    @property
    def utd_ratio(self) -> int:
        """Gradient steps per environment step online (`utd_ratio`, default 1)."""
        return int(self.config.get('utd_ratio', 1))

    @functools.partial(jax.jit, static_argnums=(0, 4), donate_argnums=(2,))
    def add_and_train(self, state: TrainState, buffer: dict, transition: dict, train: bool = True):
        """Online: write one transition into the buffer, then take `utd_ratio` gradient steps on fresh batches (fused
        in one call; the metrics are their mean, as the released QAM main.py's batch_update). train=False: the write
        alone (the steps before `start_training`); the metrics are then only `finite`."""
        buffer = buffer_lib.add_transition(buffer, transition)
        if not train:
            return state, buffer, {'finite': jnp.float32(1.0)}
        state, info = self._scan(state, buffer, self.utd_ratio)
        return state, buffer, info

    # ---- several seeds in one program (--num_seeds): vmap over seed-indexed states, data shared --------------------
    @functools.partial(jax.jit, static_argnums=(0,))
    def init_seeds(self, rngs: jax.Array) -> TrainState:
        return jax.vmap(self.init)(rngs)

    @functools.partial(jax.jit, static_argnums=(0, 3, 4))
    def train_steps_seeds(self, states: TrainState, buffer: dict, num_steps: int, metrics: str = 'chunk_mean'):
        step0 = states.step[0]  # every seed has taken the same number of steps
        return jax.vmap(lambda s: self._scan(s, buffer, num_steps, step0, metrics))(states)

    @functools.partial(jax.jit, static_argnums=(0, 4), donate_argnums=(2,))
    def add_and_train_seeds(self, states: TrainState, buffers: dict, transitions: dict, train: bool = True):
        step0 = states.step[0]

        def one(state, buffer, transition):
            buffer = buffer_lib.add_transition(buffer, transition)
            if not train:
                return state, buffer, {'finite': jnp.float32(1.0)}
            state, info = self._scan(state, buffer, self.utd_ratio, step0)
            return state, buffer, info

        return jax.vmap(one)(states, buffers, transitions)

    @functools.partial(jax.jit, static_argnums=(0, 5), static_argnames=('eval_kwargs',))
    def act_seeds(
        self, params: dict, observations: jax.Array, rngs: jax.Array, temperature: float = 1.0, eval_kwargs=()
    ):
        return jax.vmap(lambda p, o, r: self.act(p, o, r, temperature, eval_kwargs))(params, observations, rngs)

    # ---- acting ----------------------------------------------------------------------------------------------------
    @functools.partial(jax.jit, static_argnums=(0, 7), static_argnames=('eval_kwargs',))
    def act_episodes(
        self, params, observations, key, episodes, calls, temperature: float = 0.0, eval_kwargs=()
    ) -> jax.Array:
        """Evaluation in lockstep: row i is an observation of episode episodes[i] at its calls[i]-th policy call, and
        its action is drawn with the key fold_in(fold_in(key, episode), call) alone, so an episode's actions do not
        depend on which other episodes share the batch (envs/evaluation.py)."""

        def one(o, e, c):
            k = jax.random.fold_in(jax.random.fold_in(key, e), c)
            return self.act(params, o[None], k, temperature, eval_kwargs)[0]

        return jax.vmap(one)(observations, episodes, calls)

    @functools.partial(jax.jit, static_argnums=(0, 7), static_argnames=('eval_kwargs',))
    def act_episodes_seeds(self, params, observations, keys, episodes, calls, temperature=0.0, eval_kwargs=()):
        """act_episodes for seed-stacked parameters: every argument but the temperature has a leading seed axis."""
        return jax.vmap(lambda p, o, k, e, c: self.act_episodes(p, o, k, e, c, temperature, eval_kwargs))(
            params, observations, keys, episodes, calls
        )

    def acting_params(self, state: TrainState) -> dict:
        """The parameters the policy acts with (evaluation, online exploration): the agent's acting_params hook, else
        the current parameters. Works on seed-stacked states (the hook only picks networks)."""
        hook = getattr(self.agent, 'acting_params', None)
        return state.params if hook is None else hook(self.config, state.params, state.target_params)

    @functools.partial(jax.jit, static_argnums=(0, 5), static_argnames=('eval_kwargs',))
    def act(self, params: dict, observations: jax.Array, rng: jax.Array, temperature: float = 1.0, eval_kwargs=()):
        """Actions for a batch of observations. `eval_kwargs` is a hashable tuple of (key, value) pairs passed to
        the agent's sample_actions (e.g. VGF's test-time steps)."""
        actions = self.agent.sample_actions(
            self, params, observations, rng, temperature=temperature, **dict(eval_kwargs)
        )
        return jnp.clip(actions, -1.0, 1.0)
