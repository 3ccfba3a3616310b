#!/bin/bash
# Session 11 table: rounds of (bench chain with rclpy's Python executor at 1 and 4 envs, then bench graph at
# N = 1, 2, 4 (composition all) and 8, 16, 24 (halves)), so that every graph figure has a chain figure of the
# same minutes beside it (this machine's speed moved by ~20 % within minutes).
#   OUT=dir [ROUNDS=3] [SECS=15] bash docs/benchmarks/graph_s11/run_table.sh
# Prints: round, what, steps/s, in-process steps/s (graph), p50 ms, p99 ms, act batch mean (graph).
cd "$(dirname "$0")/../../.."
. .venv/bin/activate && . install/setup.bash
set -u
export ROS_DOMAIN_ID=93 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST OMP_NUM_THREADS=1
mkdir -p "$OUT"
for r in $(seq 1 "${ROUNDS:-3}"); do
  for n in 1 4; do
    f="$OUT/chain_single_N${n}_r${r}"
    CARLA_RL_EXECUTOR=single carla-rl bench chain --envs "$n" --seconds 8 --json > "$f.json" 2> "$f.err" || echo "failed: $f"
    python3 -c "import json; d = json.load(open('$f.json')); print($r, 'chain_single', $n, d['steps_per_s'], '-', d['p50_ms'], d['p99_ms'])"
  done
  for spec in all:1 all:2 all:4 halves:8 halves:16 halves:24; do
    IFS=: read -r comp n <<< "$spec"
    f="$OUT/graph_${comp}_N${n}_r${r}"
    carla-rl bench graph --envs "$n" --seconds "${SECS:-15}" --json --composition "$comp" > "$f.json" 2> "$f.err" \
      || echo "failed: $f"
    python3 -c "import json; d = json.load(open('$f.json')); print($r, 'graph_$comp', $n, d['steps_per_s'], d['inprocess_steps_per_s'], d['p50_ms'], d['p99_ms'], d['act_batch_mean'])"
  done
done
