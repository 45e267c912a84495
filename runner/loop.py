"""The offline-then-online training loop shared by every agent (no agent-specific branches).

Intervals are counted in gradient steps. Offline: `updates_per_call` gradient steps are fused into one jitted call
(lax.scan, batches sampled on the device); chunks are cut at log/eval/save boundaries. Online: one environment step
and one gradient step per iteration, the transition written into the device buffer inside the same jitted call.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from agents.common import buffer as buffer_lib
from envs.evaluation import evaluate
from runner import checkpoint as ckpt_lib
from runner.io import CsvLogger


class NonFiniteError(RuntimeError):
    pass


def _host(info: dict) -> dict:
    return {k: float(v) for k, v in jax.device_get(info).items()}


def _check_finite(info: dict, step: int, phase: str) -> None:
    if info.get('finite', 1.0) >= 1.0:
        return
    bad = sorted(k for k, v in info.items() if not math.isfinite(v))
    raise NonFiniteError(
        f'Non-finite loss in the {phase} phase within the gradient steps ending at step {step} '
        f'(non-finite means: {", ".join(bad) or "some step of the fused chunk"}). The run stopped; the last good '
        'checkpoint is kept. Lower the learning rate or the temperatures, or enable grad_clip_norm.'
    )


class Loop:
    def __init__(self, learner, task, flags, run, eval_variants=(('', {}),), logger=None):
        self.learner = learner
        self.task = task
        self.f = flags
        self.run = run
        self.variants = list(eval_variants)
        self.train_log = CsvLogger(run.file('train.csv'))
        self.eval_log = CsvLogger(run.file('eval.csv'))
        self.wandb = logger
        self.evals = []  # (step, phase, primary score)
        self.last_eval = {}
        self.t0 = time.time()
        key = jax.random.PRNGKey(flags.seed)
        self.init_key, self.act_key, self.eval_key = jax.random.split(key, 3)

    # ---- evaluation ---------------------------------------------------------------------------------------------
    def policy(self, params, key, eval_kwargs=(), temperature=0.0):
        counter = [0]

        def fn(obs):
            counter[0] += 1
            k = jax.random.fold_in(key, counter[0])
            return np.asarray(self.learner.act(params, jnp.asarray(obs), k, temperature, eval_kwargs=eval_kwargs))

        return fn

    def evaluate(self, state, step: int, phase: str) -> dict:
        if self.task.make_env is None and self.task.evaluate is None:
            return {}
        row = {'step': step, 'phase': phase}
        primary = None
        for i, (label, kwargs) in enumerate(self.variants):
            key = jax.random.fold_in(self.eval_key, step * 16 + i)
            kw = tuple(sorted(kwargs.items()))
            out = evaluate(self.task, self.policy(state.params, key, kw), self.f.eval_episodes, self.f.seed + 10_000,
                           progress=self.f.progress, desc=f'eval {label or ""} @ {step}'.replace('  ', ' '))
            samples = out.pop('samples', None)
            if i == 0:
                primary, self.last_samples = out, samples
            prefix = f'{label}/' if label else ''
            row.update({f'{prefix}{k}': v for k, v in out.items()})
        self.eval_log.write(row)
        self.evals.append((step, phase, primary['score']))
        self.last_eval = row
        if self.wandb:
            self.wandb.log({f'eval/{k}': v for k, v in row.items() if k not in ('step', 'phase')}, step=step)
        return row

    def log_train(self, info: dict, step: int, phase: str, extra: dict | None = None) -> None:
        row = {'step': step, 'phase': phase, 'time': round(time.time() - self.t0, 3), **(extra or {}), **info}
        self.train_log.write(row)
        if self.wandb:
            self.wandb.log({f'train/{k}': v for k, v in row.items() if k not in ('step', 'phase')}, step=step)

    def save(self, state, step: int, phase: str, buffer=None, online_pos=None) -> None:
        payload = {'state': state, 'step': step, 'phase': phase}
        if buffer is not None:
            payload['buffer'] = buffer
        ckpt_lib.save(self.run.checkpoint_dir, step, payload)

    # ---- phases ---------------------------------------------------------------------------------------------------
    def _due(self, step: int, interval: int) -> bool:
        return interval > 0 and step % interval == 0

    def offline(self, state, buffer):
        f = self.f
        total = f.offline_steps
        step = int(state.step)
        bar = tqdm(total=total, initial=step, desc='offline', disable=not f.progress, unit='step', smoothing=0.1)
        while step < total:
            n = min(f.updates_per_call, total - step)
            for interval in (f.log_interval, f.eval_interval, f.save_interval):
                if interval > 0:
                    n = min(n, interval - step % interval)
            state, info = self.learner.train_steps(state, buffer, n)
            info = _host(info)
            step += n
            bar.update(n)
            _check_finite(info, step, 'offline')
            if self._due(step, f.log_interval) or step == total:
                self.log_train(info, step, 'offline')
                bar.set_postfix(loss=f"{info['total_loss']:.3g}")
            if self._due(step, f.eval_interval) or step == total:
                row = self.evaluate(state, step, 'offline')
                if row:
                    bar.write(f'[offline {step}] score {self.evals[-1][2]:.3f}')
            if self._due(step, f.save_interval) or step == total:
                self.save(state, step, 'offline')
        bar.close()
        return state

    def online(self, state, buffer):
        f = self.f
        env = self.task.make_env(f.seed)
        obs, _ = env.reset(seed=f.seed)
        start = int(state.step)
        total = start + f.online_steps
        ep_return, ep_len, episodes, recent = 0.0, 0, 0, []
        bar = tqdm(total=f.online_steps, desc='online', disable=not f.progress, unit='step', smoothing=0.1)
        for i in range(f.online_steps):
            step = start + i + 1
            key = jax.random.fold_in(self.act_key, step)
            action = np.asarray(self.learner.act(state.params, jnp.asarray(obs, jnp.float32)[None], key, 1.0))[0]
            next_obs, reward, terminated, truncated, env_info = env.step(action)
            transition = dict(
                observations=obs, actions=action, rewards=self.task.transform_reward(float(reward)),
                masks=1.0 - float(terminated), terminals=float(terminated or truncated), next_observations=next_obs)
            state, buffer, info = self.learner.add_and_train(state, buffer, transition)
            if float(info['finite']) < 1.0:
                _check_finite(_host(info), step, 'online')
            ep_return += float(reward)
            ep_len += 1
            if terminated or truncated:
                episodes += 1
                recent = (recent + [self.task.score(ep_return, env_info)])[-20:]
                obs, _ = env.reset()
                ep_return, ep_len = 0.0, 0
            else:
                obs = next_obs
            bar.update(1)
            if self._due(step - start, f.log_interval) or step == total:
                info = _host(info)
                extra = {'online/episodes': episodes, 'online/recent_score': float(np.mean(recent)) if recent else ''}
                self.log_train(info, step, 'online', extra)
            if self._due(step - start, f.eval_interval) or step == total:
                row = self.evaluate(state, step, 'online')
                if row:
                    bar.write(f'[online {step}] score {self.evals[-1][2]:.3f}')
            if self._due(step - start, f.save_interval) or step == total:
                self.save(state, step, 'online', buffer)
        bar.close()
        env.close()
        return state, buffer

    def final_scores(self) -> dict:
        """FQL protocol: the mean of the last three evaluations (overall, and per phase)."""
        out = {}
        for phase in ('offline', 'online'):
            s = [sc for _, ph, sc in self.evals if ph == phase]
            if s:
                out[f'{phase}_score'] = float(np.mean(s[-3:]))
        if self.evals:
            out['final_score'] = float(np.mean([sc for _, _, sc in self.evals][-3:]))
        return out


def make_online_buffer(task, flags, config):
    return buffer_lib.make_buffer(task.train_dataset, capacity=flags.buffer_size,
                                  keep_offline=config.get('mix_offline', 0.0) > 0)
