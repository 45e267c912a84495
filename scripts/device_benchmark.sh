#!/usr/bin/env bash
# The accelerator tables of results/throughput.md (issue 17) in one prepared script, sized for a short device lease:
# ms per update of FQL, IQL, ReBRAC, FAV, QAM and VGF at 1 and 8 vmapped seeds, and one 50-episode evaluation of FQL
# and VGF (its 4 L_test variants) on pointmaze-medium and cube-single, sequential vs lockstep vs lockstep with
# environment worker processes.
#
#   scripts/device_benchmark.sh prepare    # here, once, with the package index: the wheels the device image lacks
#                                          # into .whl/ (git-ignored), for its Python (PY_VERSION, default 3.12)
#   bash scripts/device_benchmark.sh updates   # on the device, carrying .whl: $OUT/updates.md, $OUT/updates*.json
#   bash scripts/device_benchmark.sh eval      # on the device, carrying .whl: $OUT/eval.md, $OUT/eval*.json
#
# Each part stops starting work BUDGET_S seconds after it starts (default 300; give the device call timeout_s=360, so
# that both parts and a machine's start fit a 15-minute lease), keeps what it measured (the JSON files are rewritten
# after every row) and lists in its table what it did not reach, in priority order: one seed before eight, FQL before
# VGF. The tables then go into results/throughput.md's GPU section.
# `PY=.venv/bin/python OUT=/tmp/out SMOKE=1 bash scripts/device_benchmark.sh eval` checks a part on any machine in a
# few minutes (tiny networks and episodes; its figures mean nothing); .whl/ is installed when present, so it must hold
# wheels for PY's Python there (`PY_VERSION=3.11 scripts/device_benchmark.sh prepare`) or be absent.
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:-}
WHEELS=.whl
PY=${PY:-python3}

if [[ "$part" == prepare ]]; then
  # The packages the device image lacks (its jax, flax, optax, numpy, scipy, h5py, absl stay), at the versions this
  # checkout's .venv runs, so GPU and CPU tables share the simulator. dm_control (ogbench's cube builds its scene with
  # dm_control.mjcf) is repacked without its locomotion, soccer and dog assets: 56 MB, over the lease's 64 MiB.
  pip_py=${PIP_PY:-.venv/bin/python}
  names=(ogbench mujoco mujoco-core ml_collections gymnasium farama-notifications dm_control dm-env dm-tree labmaze
    glfw pyopengl)
  specs=()
  for n in "${names[@]}"; do
    if v=$("$pip_py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$n" 2>/dev/null); then
      specs+=("$n==$v")
    elif [[ "$n" != mujoco-core ]]; then  # mujoco-core: mujoco 4's library, absent before it
      echo "prepare: $n is not installed in $pip_py's environment (pip install -e . first)" >&2
      exit 1
    fi
  done
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  "$pip_py" -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$WHEELS" "${specs[@]}"
  "$pip_py" - "$WHEELS" <<'EOF'
import glob, os, sys, zipfile
DROP = ('dm_control/locomotion/soccer/', 'dm_control/locomotion/walkers/', 'dm_control/suite/dog_assets/',
        'dm_control/mujoco/testing/', 'dm_control/blender/')
(path,) = glob.glob(os.path.join(sys.argv[1], 'dm_control-*.whl'))
slim = path + '.slim'
with zipfile.ZipFile(path) as src, zipfile.ZipFile(slim, 'w', zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        if info.filename.startswith(DROP):
            continue
        data = src.read(info)
        if info.filename.endswith('.dist-info/RECORD'):  # the wheel's file list, less what was dropped
            lines = [ln for ln in data.decode().splitlines() if not ln.startswith(DROP)]
            data = ('\n'.join(lines) + '\n').encode()
        dst.writestr(info, data)
os.replace(slim, path)
EOF
  du -sh "$WHEELS"
  ls "$WHEELS"
  exit 0
fi

if [[ "$part" != updates && "$part" != eval ]]; then
  echo "usage: $0 prepare | updates | eval" >&2
  exit 2
fi
OUT=${OUT:?OUT: the folder that receives the tables (the device tool sets it)}
end=$(($(date +%s) + ${BUDGET_S:-300}))  # the wheels' install counts too
if [[ -d "$WHEELS" ]]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/tiltbench-site \
    "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/tiltbench-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 MUJOCO_GL=${MUJOCO_GL:-disable}  # nothing is rendered
left() { local l=$((end - $(date +%s))); echo $((l > 1 ? l : 1)); }  # --deadline_s=0 would mean no limit
step() { "$@" 2>&1 | tee -a "$OUT/$part.log" || echo "exit status $? (the error is above); going on" | tee -a "$OUT/$part.log"; }
{
  date -u
  nvidia-smi -L 2>/dev/null || echo 'nvidia-smi: none'
  "$PY" -c 'import jax; print("jax", jax.__version__, jax.devices())'
} 2>&1 | tee "$OUT/$part.log"
gpu=$("$PY" -c 'import jax; print(jax.devices()[0].device_kind)')
bench=("$PY" scripts/benchmark.py --out="$OUT/$part.md" --append)
if [[ -n "${SMOKE:-}" ]]; then
  bench+=(--set 'actor_hidden_dims=(8,8)' --set 'value_hidden_dims=(8,8)' --set batch_size=4)
fi

if [[ "$part" == updates ]]; then
  agents=fql,iql,rebrac,fav,qam,vgf
  reps=(--repeats=3 --steps_per_repeat=40)
  [[ -n "${SMOKE:-}" ]] && reps=(--repeats=1 --steps_per_repeat=2)
  step "${bench[@]}" --agents=$agents --upc=20 --seeds=1 "${reps[@]}" --title="$gpu: one seed, the fused default" \
    --json="$OUT/updates1.json" --deadline_s="$(left)"
  step "${bench[@]}" --agents=$agents --upc= --seeds=8 "${reps[@]}" --title="$gpu: 8 vmapped seeds" \
    --json="$OUT/updates8.json" --deadline_s="$(left)"
  step "${bench[@]}" --agents=$agents --upc=1 --seeds=1 "${reps[@]}" --title="$gpu: one update per call (online pace)" \
    --json="$OUT/updates_upc1.json" --deadline_s="$(left)"
else
  envs=pointmaze-medium-navigate-singletask-task1-v0,cube-single-play-singletask-task2-v0
  # the data only has to exist (the policies are untrained): 3 generated episodes per task
  ev=(--eval --eval_envs_names=$envs --episodes=50 --eval_workers=15 --dataset_dir=/tmp/tiltbench-data
    --generate_episodes=3)
  seq=(10 2)  # episodes the sequential rows play (FQL, VGF), scaled to 50
  if [[ -n "${SMOKE:-}" ]]; then
    ev=(--eval --eval_envs_names=$envs --episodes=2 --eval_workers=2 --dataset_dir="$OUT/data" --generate_episodes=1)
    seq=(1 1)
  fi
  step "${bench[@]}" "${ev[@]}" --eval_agents=fql --seq_episodes=${seq[0]} --json="$OUT/eval_fql.json" \
    --deadline_s="$(left)"
  step "${bench[@]}" "${ev[@]}" --eval_agents=vgf --seq_episodes=${seq[1]} --json="$OUT/eval_vgf.json" \
    --deadline_s="$(left)"
fi
echo "done in $((${BUDGET_S:-300} - end + $(date +%s))) s" | tee -a "$OUT/$part.log"
