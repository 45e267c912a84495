# Shared by scripts/reproduce_{fav,qam,vgf}.sh (sourced, not run). Each line of those scripts is one sweep: an
# environment family (its five tasks) x a list of agents x seeds, launched through scripts/sweep.py.
#
# Arguments of the reproduce scripts: --reduced selects the CPU-sized variant; everything else goes to sweep.py
# (--list, --runner=local --workers=N, --runner=slurm --partition=... --time=... --gres=gpu:1 ... [--submit],
# --num_seeds=N). Environment: SEEDS (seed count), PYTHON (interpreter, default python).
#
# Reduced variant (--reduced): the default task of each family only (antmaze/humanoidmaze task1, antsoccer task4,
# cube/scene task2, puzzle task4), 3 seeds, 20K offline steps (10K + 10K online), 2 x 256 networks, 10 evaluation
# episodes, datasets generated locally with 200 episodes (into their own directory); families whose data cannot be
# generated here (antmaze, humanoidmaze, antsoccer, cube-quadruple: expert locomotion policies / 100M data; D4RL
# hdf5 files) are skipped. scripts/aggregate.py labels these tables REDUCED.

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
PY=${PYTHON:-python}
REDUCED=0
PASS=()
for a in "$@"; do
  if [ "$a" = --reduced ]; then REDUCED=1; else PASS+=("$a"); fi
done
if [ ${#PASS[@]} -eq 0 ]; then
  sed -n '2,/^set /p' "$0" | sed -n 's/^# \{0,1\}//p'
  exit 2
fi
FAILED=0

GENERATABLE=' cube-single-play cube-double-play cube-triple-play scene-play puzzle-3x3-play puzzle-4x4-play '
REDUCED_DATA=(--generate_episodes=200 --dataset_dir=~/.ogbench/tiltbench-generated-200ep)
REDUCED_NETS=('--agent.actor_hidden_dims=(256,256)' '--agent.value_hidden_dims=(256,256)')
REDUCED_OFFLINE=(--offline_steps=20000 --eval_interval=5000 --eval_episodes=10 --save_interval=5000
  "${REDUCED_DATA[@]}" "${REDUCED_NETS[@]}")
REDUCED_O2O=(--offline_steps=10000 --online_steps=10000 --eval_interval=5000 --eval_episodes=10 --save_interval=5000
  "${REDUCED_DATA[@]}" "${REDUCED_NETS[@]}")

default_task() {  # OGBench's default task of a family (the env id without a task suffix)
  case $1 in
    antsoccer*) echo 4 ;;
    cube* | scene*) echo 2 ;;
    puzzle*) echo 4 ;;
    *) echo 1 ;;
  esac
}

# run_family NAME FAMILY "AGENTS" [main.py flags...]: the family's five tasks (reduced: its default task).
run_family() {
  local name=$1 fam=$2 agents=$3 envs i
  shift 3
  if [ $REDUCED = 1 ]; then
    fam=${fam/-100m/}  # the reduced variant generates 1M-transition data instead of QAM's 100M shards
    if [[ $GENERATABLE != *" ${fam%-sparse} "* ]]; then
      echo "[reproduce] skipping $name: the $fam data cannot be generated locally (reduced variant)" >&2
      return 0
    fi
    envs="$fam-singletask-task$(default_task "$fam")-v0"
  else
    envs=$(for i in 1 2 3 4 5; do printf '%s-singletask-task%s-v0,' "$fam" "$i"; done)
    envs=${envs%,}
  fi
  run_envs "$name" "$envs" "$agents" "$@"
}

# run_envs NAME "ENV,ENV,..." "AGENTS" [main.py flags...]: an explicit list of tasks (D4RL).
run_envs() {
  local name=$1 envs=$2 agents=$3
  shift 3
  if [ $REDUCED = 1 ] && [[ $envs != *singletask* ]]; then
    echo "[reproduce] skipping $name: D4RL hdf5 data (reduced variant)" >&2
    return 0
  fi
  echo "[reproduce] $name: ${agents} on ${envs//,/ }" >&2
  "$PY" scripts/sweep.py --name="$name" --save_dir="$SAVE_DIR" --agents="${agents// /,}" --envs="$envs" \
    --seeds="$SEEDS" "${PASS[@]}" -- "${BUDGET[@]}" "$@" || FAILED=1
}
