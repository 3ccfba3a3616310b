#!/bin/bash
# Session 9 graph runs: each spec "label:snapshot:composition:envs:repeat" runs once, in the order given, from a
# `git archive` snapshot (package + config) so that edits cannot leak into the runs:
#   git archive <rev> src/carla_rl config | tar -x -C /tmp/snap_<rev>
#   OUT=dir [SECS=15] [TRANSPORTS=LARGE_DATA] bash run_ab.sh old:/tmp/snap_old:halves:16:1 new:/tmp/snap_new:halves:16:1 ...
# Variants of NOTES.md were snapshots with one edit: `groups:` in config/graph.yaml, HALVES_FIRST_SHARE in
# carla_rl/graph.py. Prints: spec, steps/s, in-process steps/s, p50 ms, p99 ms, control timeouts.
cd "$(dirname "$0")/../../.."
. .venv/bin/activate && . install/setup.bash
set -u
export ROS_DOMAIN_ID=92 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST OMP_NUM_THREADS=1
if [ -n "${TRANSPORTS:-}" ]; then export FASTDDS_BUILTIN_TRANSPORTS=$TRANSPORTS; fi
mkdir -p "$OUT"
for spec in "$@"; do
  IFS=: read -r label snap comp n r <<< "$spec"
  f="$OUT/${label}_${comp}_N${n}_r${r}"
  PYTHONPATH=$snap/src/carla_rl:$PYTHONPATH carla-rl --config "$snap/config" bench graph --envs "$n" \
    --seconds "${SECS:-15}" --json --composition "$comp" > "$f.json" 2> "$f.err" || echo "failed: $spec"
  python3 -c "import json; d = json.load(open('$f.json')); print('$spec', d['steps_per_s'], d['inprocess_steps_per_s'], d['p50_ms'], d['p99_ms'], d['control_timeouts'])"
done
