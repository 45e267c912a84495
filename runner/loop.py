"""The offline-then-online training loop shared by every agent (no agent-specific branches).

Intervals are counted in gradient steps. Offline: `updates_per_call` gradient steps are fused into one jitted call
(lax.scan, batches sampled on the device); chunks are cut at log/eval/save boundaries, so chunking depends only on
the step count and a resumed run takes exactly the same steps. Online: one environment step and one gradient step
per iteration, the transition written into the device buffer inside the same jitted call.

`--num_seeds=N` trains seeds seed..seed+N-1 in one program: train states are stacked along a leading seed axis and
every jitted function is vmapped over it (data shared on the device); each seed writes its own run directory exactly
as a separate run would. With N = 1 nothing is vmapped.

Resume: checkpoints hold the train state (parameters, optimizer state, targets, RNG key, step), the phase, the loop
counters and, online, the buffer rows written online and the episode in progress: every online episode starts with
reset(seed=episode_seed(seed, episode index)), and the checkpoint keeps the actions taken since, the return so far,
the open-loop action queue and the current observation. A resumed run resets with that seed and replays the actions
(the simulators are deterministic given the reset seed), checks that it arrives at the saved observation, and goes
on: offline and online phases resume bit-exactly. If the replay does not arrive there (an environment whose episodes
are not reproducible from their reset seed), main.py says so and that episode restarts.
"""

from __future__ import annotations

import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from agents.common import buffer as buffer_lib
from envs.evaluation import EnvPool, run_episodes
from runner import checkpoint as ckpt_lib
from runner.io import CsvLogger, read_csv


class NonFiniteError(RuntimeError):
    pass


class ResumeError(RuntimeError):
    """--resume found checkpoints but none reads back."""


def _host(info: dict) -> dict:
    return {k: float(v) for k, v in jax.device_get(info).items()}


def _check_finite(info: dict, step: int, phase: str, run_path: str = '') -> None:
    if info.get('finite', 1.0) >= 1.0:
        return
    bad = sorted(k for k, v in info.items() if not math.isfinite(v))
    raise NonFiniteError(
        f'Non-finite loss in the {phase} phase within the gradient steps ending at step {step}{run_path} '
        f'(non-finite: {", ".join(bad) or "some step of the fused chunk"}). The run stopped; the last good '
        'checkpoint is kept. Lower the learning rate or the temperatures, or enable grad_clip_norm.'
    )


def _index(tree, k):
    return jax.tree_util.tree_map(lambda x: x[k], tree)


class SeedRun:
    """What one seed writes: its run directory, logs, evaluation history and RNG keys."""

    def __init__(self, run, seed: int):
        self.run = run
        self.seed = seed
        self.train_log = CsvLogger(run.file('train.csv'))
        self.eval_log = CsvLogger(run.file('eval.csv'))
        self.evals = []  # (step, phase, primary score)
        self.last_eval = {}
        self.last_samples = None
        self.init_key, self.act_key, self.eval_key = jax.random.split(jax.random.PRNGKey(seed), 3)

    def restore_logs(self, step: int) -> None:
        """Drop log rows after the checkpoint step (no step logged twice) and rebuild the evaluation history."""
        self.train_log.truncate_after(step)
        self.eval_log.truncate_after(step)
        for r in read_csv(self.eval_log.path):
            self.evals.append((int(float(r['step'])), r['phase'], float(r['score'])))
            self.last_eval = r


class Loop:
    def __init__(self, learner, task, flags, runs, eval_variants=(('', {}),), wandb_run=None):
        self.learner = learner
        self.task = task
        self.f = flags
        self.seeds = [SeedRun(run, flags.seed + k) for k, run in enumerate(runs)]
        self.n = len(self.seeds)
        self.variants = list(eval_variants)
        self.wandb = wandb_run
        self.t0 = time.time()
        self.online_counters = {'episodes': [0] * self.n, 'recent': [[] for _ in range(self.n)]}
        self.episodes = [_new_episode() for _ in range(self.n)]  # the online episode in progress, per seed
        self.horizon = learner.config.horizon_length  # actions per policy call, executed open-loop
        # 100M datasets come in shards: the offline rows are replaced by the next shard every dataset_replace_interval
        # gradient steps (the released main.py), shard k = step // interval (mod the number of shards).
        shards = task.extra.get('shards') or ()
        self.replace_interval = flags.dataset_replace_interval if len(shards) > 1 else 0
        self.shard = 0
        self.eval_pool = None  # evaluation environments, kept across evaluations

    # ---- state helpers (plain for one seed, stacked along axis 0 for several) -------------------------------------
    def init_state(self):
        if self.n == 1:
            return self.learner.init(self.seeds[0].init_key)
        return self.learner.init_seeds(jnp.stack([s.init_key for s in self.seeds]))

    def seed_state(self, state, k: int):
        return state if self.n == 1 else _index(state, k)

    def _train(self, state, buffer, n):
        if self.n == 1:
            state, info = self.learner.train_steps(state, buffer, n, self.f.train_metrics)
            return state, [_host(info)]
        state, info = self.learner.train_steps_seeds(state, buffer, n, self.f.train_metrics)
        info = jax.device_get(info)
        return state, [{k: float(v[i]) for k, v in info.items()} for i in range(self.n)]

    # ---- evaluation ---------------------------------------------------------------------------------------------
    def policy(self, params, key, eval_kwargs=(), temperature=0.0):
        """A policy function for a task's own evaluation (the toy): one key per call."""
        counter = [0]

        def fn(obs):
            counter[0] += 1
            k = jax.random.fold_in(key, counter[0])
            return np.asarray(self.learner.act(params, jnp.asarray(obs), k, temperature, eval_kwargs))

        return fn

    def eval_key(self, k: int, step: int, variant: int):
        """The key of seed k's evaluation of `variant` at `step`; episode e's call c draws with
        fold_in(fold_in(key, e), c) (Learner.act_episodes)."""
        return jax.random.fold_in(self.seeds[k].eval_key, step * 16 + variant)

    def _episodes(self, state, step: int) -> list[list[dict]]:
        """Every (variant, seed) evaluation of this step in one lockstep pass (envs/evaluation.py); out[v][k]."""
        S, V, E = self.n, len(self.variants), self.f.eval_episodes
        if self.eval_pool is None:
            self.eval_pool = EnvPool(
                self.task.make_env, self.seeds[0].seed + 10_000, getattr(self.f, 'eval_workers', 0)
            )
        W = self.eval_pool.width(S * V, E, getattr(self.f, 'eval_envs', 0))
        # per variant, made once per evaluation (indexing a device array in the per-step act would dispatch each step)
        keys = [
            self.eval_key(0, step, v) if S == 1 else jnp.stack([self.eval_key(k, step, v) for k in range(S)])
            for v in range(V)
        ]

        acting = self.learner.acting_params(state)

        def act(obs, episodes, calls):  # [G = V * S, W, ...], group g = v * S + k
            obs, episodes, calls = (x.reshape(V, S, W, *x.shape[2:]) for x in (obs, episodes, calls))
            out = []
            for v, (_, kwargs) in enumerate(self.variants):
                kw = tuple(sorted(kwargs.items()))
                if S == 1:
                    a = self.learner.act_episodes(acting, obs[v, 0], keys[v], episodes[v, 0], calls[v, 0], 0.0, kw)
                    a = a[None]
                else:
                    a = self.learner.act_episodes_seeds(acting, obs[v], keys[v], episodes[v], calls[v], 0.0, kw)
                out.append(np.asarray(a))
            return np.concatenate(out).reshape(V * S, W, -1)

        outs = run_episodes(
            self.eval_pool,
            act,
            V * S,
            E,
            [sr.seed + 10_000 for _ in range(V) for sr in self.seeds],
            self.task.score,
            self.horizon,
            self.f.progress,
            f'eval @ {step}',
            width=W,
        )
        return [outs[v * S : (v + 1) * S] for v in range(V)]

    def evaluate(self, state, step: int, phase: str) -> None:
        if self.task.make_env is None and self.task.evaluate is None:
            return
        if self.task.evaluate is None:
            outs = self._episodes(state, step)
        else:  # the task's own protocol (the toy): one call per (variant, seed)
            outs = [
                [
                    self.task.evaluate(
                        self.policy(
                            self.learner.acting_params(self.seed_state(state, k)),
                            self.eval_key(k, step, v),
                            tuple(sorted(kw.items())),
                        ),
                        sr.seed + 10_000,
                        self.f.eval_episodes,
                    )
                    for k, sr in enumerate(self.seeds)
                ]
                for v, (_, kw) in enumerate(self.variants)
            ]
        for k, sr in enumerate(self.seeds):
            row = {'step': step, 'phase': phase}
            for i, (label, _) in enumerate(self.variants):
                out = dict(outs[i][k])
                samples = out.pop('samples', None)
                if i == 0:  # the primary variant's metrics unprefixed, every labeled variant also as '<label>/...'
                    primary, sr.last_samples = out, samples
                    row.update(out)
                if label:
                    row.update({f'{label}/{m}': v for m, v in out.items()})
            sr.eval_log.write(row)
            sr.evals.append((step, phase, primary['score']))
            sr.last_eval = row
            if self.wandb and k == 0:
                self.wandb.log({f'eval/{m}': v for m, v in row.items() if m not in ('step', 'phase')}, step=step)
            tqdm.write(f'[{phase} {step}] seed {sr.seed} score {primary["score"]:.3f}')

    def close(self) -> None:
        if self.eval_pool is not None:
            self.eval_pool.close()
            self.eval_pool = None

    def log_train(self, infos: list[dict], step: int, phase: str, extra: list[dict] | None = None) -> None:
        for k, sr in enumerate(self.seeds):
            row = {'step': step, 'phase': phase, 'time': round(time.time() - self.t0, 3), **(extra[k] if extra else {})}
            # a NaN here is a metric no step of this call computed (ReBRAC's actor metrics between actor steps): the
            # run stops on non-finite losses before anything is logged
            row.update({m: v for m, v in infos[k].items() if not (isinstance(v, float) and math.isnan(v))})
            sr.train_log.write(row)
        if self.wandb:
            self.wandb.log({f'train/{m}': v for m, v in infos[0].items() if not math.isnan(v)}, step=step)

    # ---- checkpoints ----------------------------------------------------------------------------------------------
    def save(self, state, step: int, phase: str, buffer=None) -> None:
        for k, sr in enumerate(self.seeds):
            payload = {
                'state': self.seed_state(state, k),
                'step': step,
                'phase': phase,
                'online_counters': {
                    'episodes': self.online_counters['episodes'][k],
                    'recent': list(self.online_counters['recent'][k]),
                },
            }
            if buffer is not None:
                payload['buffer'] = buffer_rows(buffer if self.n == 1 else _index(buffer, k))
                payload['episode'] = _episode_payload(self.episodes[k])
            ckpt_lib.save(sr.run.checkpoint_dir, step, payload)

    def restore(self, template_state) -> tuple:
        """Load the newest checkpoint that reads back at a step every seed has. Returns (state, step, phase, buffer
        rows per seed or None), or None when no seed has a checkpoint (the logs are then cleared: a fresh start). An
        unreadable checkpoint is moved aside (<name>.unreadable) with a one-line warning and the previous one used."""
        raws = self._newest_readable()
        if raws is None:
            for sr in self.seeds:
                sr.train_log.truncate_after(-1)
                sr.eval_log.truncate_after(-1)
            return None
        step = int(raws[0]['step'])
        single = self.seed_state(template_state, 0)
        states = [ckpt_lib.from_raw(single, r['state']) for r in raws]
        state = states[0] if self.n == 1 else jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)
        state = jax.tree_util.tree_map(jnp.asarray, state)
        for k, (sr, r) in enumerate(zip(self.seeds, raws)):
            sr.restore_logs(step)
            counters = r.get('online_counters', {})
            self.online_counters['episodes'][k] = int(counters.get('episodes', 0))
            recent = counters.get('recent', {})
            self.online_counters['recent'][k] = (
                [float(recent[i]) for i in sorted(recent, key=int)] if isinstance(recent, dict) else list(recent)
            )
            self.episodes[k] = _episode_from_payload(r.get('episode'))
        phase = raws[0]['phase']
        rows = [r.get('buffer') for r in raws] if phase == 'online' else None
        return state, step, phase, rows

    def _newest_readable(self) -> list[dict] | None:
        per_seed = [
            {ckpt_lib.step_of(p): p for p in ckpt_lib.list_checkpoints(sr.run.checkpoint_dir)} for sr in self.seeds
        ]
        if not any(per_seed):
            return None
        moved = []
        for step in sorted(set.intersection(*(set(d) for d in per_seed)), reverse=True):
            raws = []
            for d in per_seed:
                try:
                    raws.append(ckpt_lib.read(d[step]))
                except ckpt_lib.UnreadableCheckpointError as e:
                    moved.append(ckpt_lib.move_aside(d[step]))
                    print(
                        f'[tiltbench] warning: {e.__cause__.__class__.__name__} reading {d[step]}: moved aside to '
                        f'{moved[-1]}; falling back to the previous checkpoint',
                        file=sys.stderr,
                    )
                    break
            else:
                return raws
        dirs = ', '.join(sr.run.checkpoint_dir for sr in self.seeds)
        raise ResumeError(
            f'no checkpoint in {dirs} reads back at a step every seed has'
            + (f' (unreadable ones moved aside: {", ".join(moved)})' if moved else '')
            + '; start over with --overwrite.'
        )

    # ---- phases ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _due(step: int, interval: int) -> bool:
        return interval > 0 and step % interval == 0

    def shard_for(self, step: int) -> int:
        return step // self.replace_interval if self.replace_interval else 0

    def load_shard(self, step: int, buffer, online: bool = False):
        """The buffer with the offline rows of the shard due at `step` (unchanged if it is already loaded)."""
        k = self.shard_for(step) % len(self.task.extra.get('shards') or (0,))
        if k == self.shard:
            return buffer
        self.shard = k
        data = self.task.extra['load_shard'](k)
        if online:
            return buffer_lib.replace_offline_rows(buffer, data)
        return buffer_lib.make_buffer(data)

    def offline(self, state, buffer, start: int = 0):
        f = self.f
        total = f.offline_steps
        step = start
        buffer = self.load_shard(step, buffer)
        bar = tqdm(total=total, initial=step, desc='offline', disable=not f.progress, unit='step', smoothing=0.1)
        while step < total:
            n = min(f.updates_per_call, total - step)
            for interval in (f.log_interval, f.eval_interval, f.save_interval, self.replace_interval):
                if interval > 0:
                    n = min(n, interval - step % interval)
            state, infos = self._train(state, buffer, n)
            trained_on = self.shard
            step += n
            bar.update(n)
            for k, info in enumerate(infos):
                _check_finite(info, step, 'offline', f' (seed {self.seeds[k].seed})' if self.n > 1 else '')
            if step < total:
                buffer = self.load_shard(step, buffer)
            if self._due(step, f.log_interval) or step == total:
                shard = [{'data/shard': trained_on}] * self.n if self.replace_interval else None
                self.log_train(infos, step, 'offline', shard)
                bar.set_postfix(loss=f'{infos[0]["total_loss"]:.3g}')
            if self._due(step, f.eval_interval) or step == total:
                self.evaluate(state, step, 'offline')
            if self._due(step, f.save_interval) or step == total:
                self.save(state, step, 'offline')
        bar.close()
        return state

    def online(self, state, buffer, start: int, done: int = 0):
        """`start`: gradient steps before the online phase (= offline steps); `done`: online steps already taken."""
        f = self.f
        self.shard = 0  # the online buffer is built from task.train_dataset, the first shard
        envs = [self.task.make_env(sr.seed) for sr in self.seeds]
        obs = [self._start_episode(k, env) for k, env in enumerate(envs)]
        total = start + f.online_steps
        # Action chunks are executed open-loop: a seed's queue is refilled (one policy call) when empty, and emptied
        # at every episode end; the buffer receives single transitions.
        queues = [ep['queue'] for ep in self.episodes]
        # The agent's start_training: online steps 1 .. start_training - 1 take no gradient step (and act uniformly at
        # random with random_before_training), as the QAM and VGF codes' main.py (configs/common.py).
        start_training = int(self.learner.config.get('start_training', 0))
        random_first = bool(self.learner.config.get('random_before_training', False))
        if start_training > 1 and done + 1 < start_training:
            how = 'acting uniformly at random' if random_first else 'acting with the policy'
            print(
                f'[tiltbench] online: the first gradient step comes at online step {start_training} '
                f'(--agent.start_training; the steps before it only fill the buffer, {how})',
                flush=True,
            )
        bar = tqdm(total=f.online_steps, initial=done, desc='online', disable=not f.progress, unit='step')
        for i in range(done, f.online_steps):
            step = start + i + 1
            warmup = i + 1 < start_training
            if warmup and random_first:
                for k, q in enumerate(queues):
                    if not q:  # one action, not a chunk (the QAM code's main.py)
                        q.append(self.random_action(k, step))
            if not all(queues):
                keys = [jax.random.fold_in(sr.act_key, step) for sr in self.seeds]
                acting = self.learner.acting_params(state)
                if self.n == 1:
                    chunks = np.asarray(self.learner.act(acting, jnp.asarray(obs[0], jnp.float32)[None], keys[0]))
                else:
                    o = jnp.asarray(np.stack(obs), jnp.float32)[:, None]
                    chunks = np.asarray(self.learner.act_seeds(acting, o, jnp.stack(keys)))[:, 0]
                for k, q in enumerate(queues):
                    if not q:
                        q.extend(np.reshape(chunks[k], (self.horizon, -1)))
            transitions, next_obs_list = [], []
            for k, env in enumerate(envs):
                ep = self.episodes[k]
                action = queues[k].pop(0)
                next_obs, reward, terminated, truncated, env_info = env.step(action)
                ep['actions'].append(np.asarray(action))
                transitions.append(
                    dict(
                        observations=np.asarray(obs[k], np.float32),
                        actions=np.asarray(action, np.float32),
                        rewards=np.float32(self.task.transform_reward(float(reward))),
                        masks=np.float32(1.0 - float(terminated)),
                        terminals=np.float32(terminated or truncated),
                        next_observations=np.asarray(next_obs, np.float32),
                    )
                )
                ep['return'] += float(reward)
                if terminated or truncated:
                    self.online_counters['episodes'][k] += 1
                    rec = self.online_counters['recent'][k]
                    rec.append(self.task.score(ep['return'], env_info))
                    del rec[:-20]
                    self.episodes[k] = _new_episode()
                    queues[k] = self.episodes[k]['queue']
                    next_obs = self._start_episode(k, env)
                ep = self.episodes[k]
                ep['obs'] = np.asarray(next_obs, np.float32)
                next_obs_list.append(next_obs)
            obs = next_obs_list
            if self.replace_interval:
                buffer = self.load_shard(step - 1, buffer, online=True)
            if self.n == 1:
                state, buffer, info = self.learner.add_and_train(state, buffer, transitions[0], not warmup)
                infos = [info]
            else:
                tr = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *transitions)
                state, buffer, info = self.learner.add_and_train_seeds(state, buffer, tr, not warmup)
                infos = [_index(info, k) for k in range(self.n)]
            for k, info in enumerate(infos):
                if float(info['finite']) < 1.0:
                    _check_finite(_host(info), step, 'online', f' (seed {self.seeds[k].seed})' if self.n > 1 else '')
            bar.update(1)
            if self._due(step - start, f.log_interval) or step == total:
                extra = [
                    {
                        'online/episodes': self.online_counters['episodes'][k],
                        'online/recent_score': float(np.mean(r)) if (r := self.online_counters['recent'][k]) else '',
                    }
                    for k in range(self.n)
                ]
                self.log_train([_host(x) for x in infos], step, 'online', extra)
            if self._due(step - start, f.eval_interval) or step == total:
                self.evaluate(state, step, 'online')
            if self._due(step - start, f.save_interval) or step == total:
                self.save(state, step, 'online', buffer)
        bar.close()
        for env in envs:
            env.close()
        return state, buffer

    def random_action(self, k: int, step: int) -> np.ndarray:
        """Seed k's uniform action in [-1, 1] at `step` (random_before_training): a function of (run seed, step) only,
        so a resumed run draws the same."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seeds[k].seed, step, 0x5EED]))
        return rng.uniform(-1.0, 1.0, self.task.action_dim).astype(np.float32)

    def episode_seed(self, k: int) -> int:
        """The reset seed of seed k's current online episode: a function of (run seed, episode index) only."""
        ss = np.random.SeedSequence([self.seeds[k].seed, self.online_counters['episodes'][k], 0x0E1])
        return int(ss.generate_state(1)[0] & 0x7FFFFFFF)

    def _start_episode(self, k: int, env):
        """Reset seed k's env for its current episode; a restored episode in progress is replayed from its reset
        seed to where the checkpoint left it (if the replay arrives elsewhere, say so and restart the episode)."""
        ep = self.episodes[k]
        o, _ = env.reset(seed=self.episode_seed(k))
        if not ep['actions']:
            return o
        for a in ep['actions']:
            o = env.step(a)[0]
        if ep['obs'] is not None and np.array_equal(np.asarray(o, np.float32), ep['obs']):
            return o
        print(
            f'[tiltbench] warning: seed {self.seeds[k].seed}: replaying the online episode in progress '
            f"({len(ep['actions'])} steps) from its reset seed did not reproduce the checkpoint's observation: this "
            'environment is not deterministic given its reset seed, so the episode restarts (the run is not '
            'bit-exact from here)',
            file=sys.stderr,
        )
        self.episodes[k] = _new_episode()
        return env.reset(seed=self.episode_seed(k))[0]

    def final_scores(self, k: int) -> dict:
        """FQL protocol: the mean of the last three evaluations of a phase. `final_score` is that of the last phase
        that evaluated (online when there is one), never a mean across phases."""
        evals, out = self.seeds[k].evals, {}
        for phase in ('offline', 'online'):
            s = [sc for _, ph, sc in evals if ph == phase]
            if s:
                out[f'{phase}_score'] = float(np.mean(s[-3:]))
                out['final_score'] = out[f'{phase}_score']
                out['final_phase'] = phase
        return out


# ---- the online episode in progress in checkpoints ----------------------------------------------------------------
def _new_episode() -> dict:
    return {'actions': [], 'return': 0.0, 'queue': [], 'obs': None}


def _episode_payload(ep: dict) -> dict:
    out = {'return': ep['return'], 'length': len(ep['actions']), 'queue_length': len(ep['queue'])}
    if ep['actions']:
        out['actions'] = np.stack(ep['actions'])
    if ep['queue']:
        out['queue'] = np.stack(ep['queue'])
    if ep['obs'] is not None:
        out['obs'] = ep['obs']
    return out


def _episode_from_payload(p: dict | None) -> dict:
    ep = _new_episode()
    if not p:
        return ep
    ep['return'] = float(p['return'])
    ep['actions'] = list(np.asarray(p['actions'])) if int(p['length']) else []
    ep['queue'] = list(np.asarray(p['queue'])) if int(p['queue_length']) else []
    ep['obs'] = np.asarray(p['obs'], np.float32) if 'obs' in p else None
    return ep


# ---- the online buffer in checkpoints: only the rows written online (the offline rows come from the dataset) ------
def buffer_rows(buffer: dict) -> dict:
    buffer = jax.device_get(buffer)
    cap = buffer['data']['observations'].shape[0]
    size, num_offline, keep = int(buffer['size']), int(buffer['num_offline']), int(buffer['keep'])
    lo = num_offline if size < cap else keep
    hi = size if size < cap else cap
    return {
        'lo': lo,
        'hi': hi,
        'size': size,
        'ptr': int(buffer['ptr']),
        'rows': {k: np.asarray(v[lo:hi]) for k, v in buffer['data'].items()},
    }


def restore_buffer(buffer: dict, rows: dict) -> dict:
    lo, hi = int(rows['lo']), int(rows['hi'])
    data = {k: v.at[lo:hi].set(jnp.asarray(rows['rows'][k])) for k, v in buffer['data'].items()}
    return dict(
        buffer, data=data, size=jnp.asarray(int(rows['size']), jnp.int32), ptr=jnp.asarray(int(rows['ptr']), jnp.int32)
    )


def online_capacity(num_offline: int, buffer_size: int, mixing: bool) -> int:
    """Rows of the online buffer, as the FQL code's main.py sizes it: the offline data plus room for online rows.
    Plain fine-tuning: max(buffer_size, offline + 1) rows (create_from_initial_dataset), the oldest rows overwritten
    first. Mixed offline / online batches (mix_offline > 0; its balanced_sampling keeps a separate online buffer of
    buffer_size rows): offline + buffer_size rows, the offline ones never overwritten."""
    return num_offline + buffer_size if mixing else max(buffer_size, num_offline + 1)


def make_online_buffer(task, flags, config, n_seeds: int = 1):
    n, mixing = len(task.train_dataset['observations']), config.get('mix_offline', 0.0) > 0
    buf = buffer_lib.make_buffer(
        task.train_dataset, capacity=online_capacity(n, flags.buffer_size, mixing), keep_offline=mixing
    )
    if n_seeds > 1:
        buf = jax.tree_util.tree_map(lambda x: jnp.stack([x] * n_seeds), buf)
    return buf
