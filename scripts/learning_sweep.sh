#!/usr/bin/env bash
# Learning-speed sweep on 2-core slices of a bigger machine (how docs/BENCHMARKS.md's hyperparameter table
# was made, on a GPU machine's 16 CPU cores; no GPU used). Each variant: the ROS-free trainer
# (`python -m carla_rl.training.vector_training`, exact replay ratio) with 2 env workers on --device cpu, pinned by
# taskset to its own 2 cores, one torch thread, for SECONDS; prints the phases passed and writes
# $OUT/learning_sweep.json (summary.json of every run). Gymnasium must be importable (on a machine without
# network access: carry the wheels in .whl/).
#
#   bash scripts/learning_sweep.sh "name:agent.key=value,...:seed:initial_phase" ...
#   e.g. "base::0:1" "lr5e-4_t250:lr=5e-4,target_update_interval=250:0:1"
set -u
SECONDS_PER_RUN=${SECONDS_PER_RUN:-530}
OUT=${OUT:-/tmp/learning_sweep}
mkdir -p "$OUT"
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src/carla_rl:${PYTHONPATH:-} OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
python3 -c "import carla_rl.sim.kernels"   # compile the numba kernels once, before the runs start
i=0
for v in "$@"; do
  IFS=: read -r name kv seed phase <<< "$v"
  d=/tmp/sweep_cfg_$name; rm -rf "$d"; cp -r config "$d"
  python3 - "$d/agent.yaml" "$kv" <<'PY'
import sys

import yaml

path, assignments = sys.argv[1], sys.argv[2]
doc = yaml.safe_load(open(path))
agent = doc["/**/dqn_policy"]["ros__parameters"]["agent"]
for item in filter(None, assignments.split(",")):
    key, value = item.split("=")
    *parents, leaf = key.split(".")
    node = agent
    for p in parents:
        node = node[p]
    node[leaf] = type(node[leaf])(float(value) if isinstance(node[leaf], float) else int(value))
yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
PY
  sed -i "s/^    initial_phase: 1 /    initial_phase: $phase /" "$d/curriculum.yaml"
  rm -rf "/tmp/sweep_run_$name"
  taskset -c $((2 * i)),$((2 * i + 1)) timeout $((SECONDS_PER_RUN + 45)) python3 -m carla_rl.training.vector_training \
    --envs 2 --device cpu --seconds "$SECONDS_PER_RUN" --seed "$seed" --config "$d" \
    --save-dir "/tmp/sweep_run_$name" > "/tmp/sweep_log_$name.txt" 2>&1 &
  i=$((i + 1))
done
wait
python3 - "$OUT" "$@" <<'PY'
import json
import sys

out, names = sys.argv[1], [v.split(":")[0] for v in sys.argv[2:]]
results = {}
for name in names:
    s = json.load(open(f"/tmp/sweep_run_{name}/summary.json"))
    results[name] = {k: s[k] for k in ("wall_s", "env_steps", "updates", "total_episodes", "final_phase", "passed")}
    print(name, "final phase", s["final_phase"], "passed:", [(r["phase"], r["passed_at_s"]) for r in s["passed"]],
          "env steps", s["env_steps"], "updates", s["updates"])
json.dump(results, open(f"{out}/learning_sweep.json", "w"), indent=1)
PY
