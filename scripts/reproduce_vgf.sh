#!/usr/bin/env bash
# Reproduce the VGF paper's tables with --preset=paper (VGF Tables 5-6 for vgf; FAV Table 6 for the baselines):
#   Table 7 (= Table 2 per task): 45 OGBench tasks (9 families x 5), 5 seeds, 1M gradient steps;
#   Table 1: D4RL, 1M gradient steps: 6 antmaze tasks (fql, vgf) and 9 locomotion tasks (vgf only): tiltbench has
#   no per-task presets for the other baselines there (FAV Table 6 has no IQL values on D4RL antmaze and nothing on
#   locomotion); VGF Table 1 quotes their numbers from earlier papers.
# Evaluations every 100K steps; scripts/aggregate.py scores the mean of 800K/900K/1M (VGF itself averages its final
# 10 evaluations, with mean +- std over 5 seeds).
#
# Usage (every argument except --reduced goes to scripts/sweep.py):
#   scripts/reproduce_vgf.sh --list
#   scripts/reproduce_vgf.sh --runner=slurm --partition=gpu --time=24:00:00 --gres=gpu:1 [--num_seeds=5] [--submit]
#   scripts/reproduce_vgf.sh --reduced --runner=local --workers=2        # CPU-sized variant (REDUCED tables)
# Then: python scripts/aggregate.py --runs=runs/reproduce_vgf --out=results/reproduce_vgf
# D4RL needs the original hdf5 files (see envs/d4rl.py).
set -uo pipefail
source "$(dirname "$0")/sweeps/reproduce_lib.sh"

if [ $REDUCED = 1 ]; then
  SAVE_DIR=runs/reproduce_vgf_reduced/offline SEEDS=${SEEDS:-3} BUDGET=(--preset=paper "${REDUCED_OFFLINE[@]}")
else
  SAVE_DIR=runs/reproduce_vgf/offline SEEDS=${SEEDS:-5}
  BUDGET=(--preset=paper --offline_steps=1000000 --eval_interval=100000 --eval_episodes=50)
fi
AGENTS='iql rebrac fql vgf'

# ---- Table 7: OGBench ----
run_family vgf_antmaze-giant       antmaze-giant-navigate        "$AGENTS"
run_family vgf_humanoidmaze-med    humanoidmaze-medium-navigate  "$AGENTS"
run_family vgf_humanoidmaze-lrg    humanoidmaze-large-navigate   "$AGENTS"
run_family vgf_antsoccer           antsoccer-arena-navigate      "$AGENTS"
run_family vgf_cube-single         cube-single-play              "$AGENTS"
run_family vgf_cube-double         cube-double-play              "$AGENTS"
run_family vgf_scene               scene-play                    "$AGENTS"
run_family vgf_puzzle-3x3          puzzle-3x3-play               "$AGENTS"
run_family vgf_puzzle-4x4          puzzle-4x4-play               "$AGENTS"
# ---- Table 1: D4RL ----
run_envs vgf_d4rl-antmaze antmaze-umaze-v2,antmaze-umaze-diverse-v2,antmaze-medium-play-v2,antmaze-medium-diverse-v2,antmaze-large-play-v2,antmaze-large-diverse-v2 'fql vgf'
run_envs vgf_d4rl-halfcheetah halfcheetah-medium-v2,halfcheetah-medium-replay-v2,halfcheetah-medium-expert-v2 vgf
run_envs vgf_d4rl-hopper hopper-medium-v2,hopper-medium-replay-v2,hopper-medium-expert-v2 vgf
run_envs vgf_d4rl-walker2d walker2d-medium-v2,walker2d-medium-replay-v2,walker2d-medium-expert-v2 vgf
exit $FAILED
