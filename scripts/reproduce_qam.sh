#!/usr/bin/env bash
# Reproduce the QAM paper's main offline grid (Table 1: 10 OGBench domains x 5 tasks, 8 seeds, 1M gradient steps,
# evaluations every 100K; QAM Table 1 reports 5-task domain averages) under QAM's protocol, `--preset=qam`
# (experiments/reproduce.py): K = 10 critic heads with the pessimistic target (rho 0.5; 0 on humanoidmaze), action
# chunks of 5 on cube / scene / puzzle, the sparse-reward scene and puzzle variants, and reproduce.py's per-domain
# values for every method of Table 1 that tiltbench has: qam, qam_fql, qam_edit, fql, rebrac; puzzle-4x4 and
# cube-quadruple on the 100M-transition datasets (the -100m names; download them first, main.py says how). The
# --reduced variant runs the 1M-transition puzzle-4x4 it can generate instead.
#
# Usage (every argument except --reduced goes to scripts/sweep.py):
#   scripts/reproduce_qam.sh --list
#   scripts/reproduce_qam.sh --runner=slurm --partition=gpu --time=24:00:00 --gres=gpu:1 [--num_seeds=8] [--submit]
#   scripts/reproduce_qam.sh --reduced --runner=local --workers=2        # CPU-sized variant (REDUCED tables)
# Then: python scripts/aggregate.py --runs=runs/reproduce_qam --out=results/reproduce_qam
set -uo pipefail
source "$(dirname "$0")/sweeps/reproduce_lib.sh"

if [ $REDUCED = 1 ]; then
  SAVE_DIR=runs/reproduce_qam_reduced/offline SEEDS=${SEEDS:-3} BUDGET=("${REDUCED_OFFLINE[@]}")
else
  SAVE_DIR=runs/reproduce_qam/offline SEEDS=${SEEDS:-8}
  BUDGET=(--offline_steps=1000000 --eval_interval=100000 --eval_episodes=50)
fi
AGENTS='qam qam_fql qam_edit fql rebrac'

#          sweep name              domain (family)                agents     protocol
run_family qam_scene               scene-play-sparse              "$AGENTS"  --preset=qam
run_family qam_puzzle-3x3          puzzle-3x3-play-sparse         "$AGENTS"  --preset=qam
run_family qam_puzzle-4x4          puzzle-4x4-play-100m-sparse    "$AGENTS"  --preset=qam
run_family qam_cube-double         cube-double-play               "$AGENTS"  --preset=qam
run_family qam_cube-triple         cube-triple-play               "$AGENTS"  --preset=qam
run_family qam_cube-quad           cube-quadruple-play-100m       "$AGENTS"  --preset=qam
run_family qam_antmaze-large       antmaze-large-navigate         "$AGENTS"  --preset=qam
run_family qam_antmaze-giant       antmaze-giant-navigate         "$AGENTS"  --preset=qam
run_family qam_humanoid-med        humanoidmaze-medium-navigate   "$AGENTS"  --preset=qam
run_family qam_humanoid-lrg        humanoidmaze-large-navigate    "$AGENTS"  --preset=qam
exit $FAILED
