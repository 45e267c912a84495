"""main.py end to end, the way users run it: every baseline offline + online, determinism, OGBench round trip on a
tiny locally generated dataset, and each bad-input error."""

import csv
import json
import os

import jax
import numpy as np
import pytest

from tests.conftest import TINY, read_final, run_main, run_tunables

TOY = ['--env_name=toy-8gaussians', '--eval_episodes=1', '--log_interval=20', '--save_interval=40']


@pytest.mark.parametrize('agent', ['iql', 'rebrac', 'fql'])
def test_baseline_offline_then_online_on_toy(agent, tmp_path):
    run_main(
        [f'--agent={agent}', *TOY, '--offline_steps=60', '--online_steps=20', '--eval_interval=40', *TINY], tmp_path
    )
    run = tmp_path / f'{agent}_toy-8gaussians_seed0'
    final = read_final(run)
    assert final['steps'] == 80 and final['agent'] == agent
    assert np.isfinite(final['final_score']) and np.isfinite(final['offline_score'])
    assert 0.0 <= final['last_eval']['tv_distance'] <= 1.0
    samples = np.load(run / 'policy_samples.npy')
    assert samples.shape == (10_000, 2) and np.all(np.abs(samples) <= 1)
    with open(run / 'eval.csv') as f:
        rows = list(csv.DictReader(f))
    assert [(r['step'], r['phase']) for r in rows] == [('40', 'offline'), ('60', 'offline'), ('80', 'online')]
    # The final score of an offline-to-online run is the online phase's, never a mean over both phases.
    scores = [float(r['score']) for r in rows]
    assert final['offline_score'] == pytest.approx(np.mean(scores[:2])) and final['final_phase'] == 'online'
    assert final['final_score'] == final['online_score'] == pytest.approx(scores[2])
    assert json.load(open(run / 'status.json'))['status'] == 'finished'
    assert os.listdir(run / 'checkpoints')
    # main.py re-executed itself with glibc's heap on huge pages where that helps (runner/hugepages.py)
    assert final['glibc_tunables'] == run_tunables()


def test_runs_are_deterministic_given_seed(tmp_path):
    args = ['--agent=fql', *TOY, '--offline_steps=40', '--online_steps=10', '--eval_interval=40', *TINY]
    run_main([*args, '--run_name=a'], tmp_path)
    run_main([*args, '--run_name=b'], tmp_path)
    fa, fb = read_final(tmp_path / 'a'), read_final(tmp_path / 'b')
    assert fa['final_score'] == fb['final_score']
    np.testing.assert_array_equal(
        np.load(tmp_path / 'a' / 'policy_samples.npy'), np.load(tmp_path / 'b' / 'policy_samples.npy')
    )
    ta = [{k: v for k, v in r.items() if k != 'time'} for r in csv.DictReader(open(tmp_path / 'a' / 'train.csv'))]
    tb = [{k: v for k, v in r.items() if k != 'time'} for r in csv.DictReader(open(tmp_path / 'b' / 'train.csv'))]
    assert ta == tb


def test_step_metrics_of_fused_calls_are_those_of_one_update_per_call(tmp_path):
    """--train_metrics=step: a row of a run that fuses 20 steps per call holds the logged step's own metrics, as a run
    at one update per call logs them (what the parity harness compares with the released codes' logs)."""
    args = ['--agent=rebrac', *TOY, '--offline_steps=40', '--eval_interval=40', *TINY]
    run_main([*args, '--updates_per_call=1', '--run_name=one'], tmp_path)
    run_main([*args, '--train_metrics=step', '--run_name=fused'], tmp_path)
    one, fused = ([r for r in csv.DictReader(open(tmp_path / n / 'train.csv'))] for n in ('one', 'fused'))
    assert [r['step'] for r in one] == [r['step'] for r in fused] == ['20', '40']
    assert one[0].keys() == fused[0].keys() and 'actor/loss' in one[0]
    for a, b in zip(one, fused):
        for k in a.keys() - {'time', 'phase'}:
            np.testing.assert_allclose(float(b[k]), float(a[k]), rtol=1e-4, atol=1e-6, err_msg=k)
    assert json.load(open(tmp_path / 'fused' / 'config.json'))['flags']['train_metrics'] == 'step'


def test_ogbench_round_trip_with_local_generation(tmp_path):
    """Missing dataset + no download -> generated locally with the real env and oracle, loaded by ogbench, trained,
    evaluated in the real environment (success rate)."""
    data = tmp_path / 'data'
    proc = run_main(
        [
            '--agent=iql',
            '--env_name=pointmaze-medium-navigate-singletask-task1-v0',
            f'--dataset_dir={data}',
            '--download=false',
            '--generate_episodes=2',
            '--offline_steps=20',
            '--online_steps=5',
            '--eval_interval=20',
            '--eval_episodes=1',
            *TINY,
        ],
        tmp_path,
    )
    assert 'GENERATING IT LOCALLY' in proc.stderr
    assert (data / 'pointmaze-medium-navigate-v0.npz').exists()
    final = read_final(tmp_path / 'iql_pointmaze-medium-navigate-singletask-task1-v0_seed0')
    assert final['offline_score'] in (0.0, 100.0)  # one episode: success is 0 or 100 %
    assert any('generated locally' in n and 'REDUCED' in n for n in final['task_notes'])
    # a later run on the cached small dataset is still labeled, even without --generate_episodes
    run_main(
        [
            '--agent=iql',
            '--env_name=pointmaze-medium-navigate-singletask-task1-v0',
            f'--dataset_dir={data}',
            '--download=false',
            '--offline_steps=2',
            '--eval_interval=0',
            '--eval_episodes=1',
            '--run_name=again',
            *TINY,
        ],
        tmp_path,
    )
    assert any('REDUCED size' in n for n in read_final(tmp_path / 'again')['task_notes'])


def _err(args, tmp_path, code=2):
    proc = run_main(args, tmp_path, check=False)
    assert proc.returncode == code, proc.stderr[-2000:]
    return proc.stderr


def test_unknown_agent_lists_valid_ones(tmp_path):
    err = _err(['--agent=fqll', '--env_name=toy-8gaussians'], tmp_path)
    assert "Unknown agent 'fqll'" in err and "Did you mean 'fql'" in err and 'iql' in err and 'rebrac' in err


def test_unknown_env_lists_valid_ones(tmp_path):
    err = _err(['--agent=fql', '--env_name=cube-singel-play-singletask-task2-v0', '--offline_steps=1'], tmp_path)
    assert 'Unknown environment' in err and 'toy-8gaussians' in err and 'D4RL' in err
    assert "Did you mean 'cube-single-play-singletask-task2-v0'" in err


def test_unknown_config_key_suggests_closest(tmp_path):
    err = _err(['--agent=fql', '--agent.alpah=3'], tmp_path)
    assert '--agent.alpah' in err and "Did you mean 'alpha'" in err


@pytest.mark.parametrize(
    'bad, msg',
    [
        ('--agent.alpha=-1', 'alpha must be positive'),
        ('--agent.discount=1.5', 'discount must be in'),
        ('--agent.batch_size=600000', 'larger than the dataset'),
        ('--agent.rho=0.3', "--agent.rho has no effect unless q_agg (or grad_q_agg / actor_q_agg) = 'pessimistic'"),
        ('--agent.horizon_length=0', 'horizon_length (action chunk size) must be an integer >= 1'),
        ('--agent.horizon_length=5', 'toy-8gaussians has one-step episodes'),
    ],
)
def test_bad_hyperparameters(bad, msg, tmp_path):
    err = _err(['--agent=fql', '--env_name=toy-8gaussians', '--offline_steps=1', bad], tmp_path)
    assert msg in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_missing_dataset_says_how_to_get_it(tmp_path):
    err = _err(
        [
            '--agent=fql',
            '--env_name=antmaze-large-navigate-singletask-task1-v0',
            f'--dataset_dir={tmp_path}',
            '--download=false',
        ],
        tmp_path,
    )
    assert 'antmaze-large-navigate-v0' in err and 'download' in err.lower() and 'expert' in err.lower()


def _corrupt(tmp_path):
    for name in ('pointmaze-medium-navigate-v0.npz', 'pointmaze-medium-navigate-v0-val.npz'):
        (tmp_path / name).write_bytes(b'not a zip file')


def _truncate(tmp_path):
    from envs.ogbench_gen import generate_dataset

    train, _ = generate_dataset(
        'pointmaze-medium-navigate-v0', str(tmp_path), num_episodes=2, episode_length=50, progress=False
    )
    data = open(train, 'rb').read()
    open(train, 'wb').write(data[: len(data) // 2])


@pytest.mark.parametrize('damage', [_corrupt, _truncate], ids=['corrupt', 'truncated'])
def test_bad_dataset_file_gets_a_message(damage, tmp_path):
    damage(tmp_path)
    err = _err(
        [
            '--agent=fql',
            '--env_name=pointmaze-medium-navigate-singletask-task1-v0',
            f'--dataset_dir={tmp_path}',
            '--download=false',
        ],
        tmp_path,
    )
    assert 'truncated' in err and 'Traceback' not in err


def test_finished_run_is_never_overwritten(tmp_path):
    args = ['--agent=fql', *TOY, '--offline_steps=20', '--eval_interval=20', *TINY]
    run_main(args, tmp_path)
    final = (tmp_path / 'fql_toy-8gaussians_seed0' / 'final.json').read_bytes()
    err = _err(args, tmp_path)
    assert 'already exists' in err and '(finished)' in err
    assert (tmp_path / 'fql_toy-8gaussians_seed0' / 'final.json').read_bytes() == final


def test_non_finite_loss_stops_with_message_and_keeps_checkpoint(tmp_path):
    args = [
        '--agent=fql',
        *TOY,
        '--offline_steps=200',
        '--eval_interval=0',
        '--save_interval=20',
        '--updates_per_call=10',
        '--agent.lr=1e12',
        *TINY,
    ]
    err = _err(args, tmp_path, code=1)
    assert 'Non-finite loss' in err
    run = tmp_path / 'fql_toy-8gaussians_seed0'
    assert json.load(open(run / 'status.json'))['status'] == 'failed'
    assert not (run / 'final.json').exists()


def test_start_training_holds_gradient_steps_and_random_warmup_ignores_the_policy(tmp_path):
    """--agent.start_training=S (the QAM / VGF codes' main.py): online steps 1 .. S-1 only act and fill the buffer, the
    first gradient step comes at online step S; with random_before_training those steps act uniformly at random,
    whatever the policy (the QAM code under --balanced_sampling)."""
    from runner import checkpoint as ckpt_lib

    base = ['--agent=iql', *TOY, '--offline_steps=6', '--save_interval=3', '--log_interval=1', *TINY]
    held = [*base, '--online_steps=6', '--agent.start_training=4']
    run_main([*held, '--run_name=held'], tmp_path)
    run_main([*base, '--online_steps=0', '--run_name=offline'], tmp_path)

    def ckpt(name, step):
        return ckpt_lib.read(str(tmp_path / name / 'checkpoints' / f'ckpt_{step:09d}.msgpack'))

    # online steps 1-3 (global 7-9) took no gradient step: the state is the offline run's last, to the bit
    at9, at12, offline = ckpt('held', 9)['state'], ckpt('held', 12)['state'], ckpt('offline', 6)['state']
    assert int(at9['step']) == 6 and int(at12['step']) == 9  # steps 4, 5, 6 each took one
    for a, b in zip(jax.tree_util.tree_leaves(at9['params']), jax.tree_util.tree_leaves(offline['params'])):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(at12['params']), jax.tree_util.tree_leaves(at9['params']))
    )
    with open(tmp_path / 'held' / 'train.csv') as f:
        online = [r for r in csv.DictReader(f) if r['phase'] == 'online']
    loss = next(k for k in online[-1] if k.endswith('loss'))
    assert [r['step'] for r in online] == [str(s) for s in range(7, 13)]
    assert [r[loss] == '' for r in online] == [True, True, True, False, False, False]

    # random warm-up: the same actions under two different policies, uniform in [-1, 1]; the policy's own differ
    rand = [*held, '--agent.random_before_training=True']
    run_main([*rand, '--run_name=rand_a'], tmp_path)
    run_main([*rand, '--agent.lr=0.01', '--run_name=rand_b'], tmp_path)
    acts = {n: ckpt(n, 9)['buffer']['rows']['actions'] for n in ('held', 'rand_a', 'rand_b')}
    assert acts['rand_a'].shape == (3, 2) and np.all(np.abs(acts['rand_a']) <= 1)
    np.testing.assert_array_equal(acts['rand_a'], acts['rand_b'])
    assert not np.array_equal(acts['rand_a'], acts['held'])
