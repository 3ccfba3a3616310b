#!/bin/bash
# Session 8 graph runs: old = the code before the allocator settings (358d26f) vs new (this session), both from
# `git archive` snapshots (package + config) so that edits cannot leak into the runs; alternated run by run.
#   OLD=/path/to/old/snapshot NEW=/path/to/new/snapshot OUT=dir bash run_ab.sh
# (the session ran these runs in two invocations, in this order within each: NOTES.md)
cd "$(dirname "$0")/../../.."
. .venv/bin/activate && . install/setup.bash
set -u
export ROS_DOMAIN_ID=82 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST OMP_NUM_THREADS=1
run() {  # code composition N repeat
  local snap=$OLD; [ "$1" = new ] && snap=$NEW
  PYTHONPATH=$snap/src/carla_rl:$PYTHONPATH carla-rl --config $snap/config bench graph --envs $3 --seconds 15 --json --composition $2 \
    > "$OUT/$1_$2_N$3_r$4.json" 2> "$OUT/$1_$2_N$3_r$4.err" || echo "failed: $1 $2 $3 $4"
}
for r in 1 2 3 4 5; do run old halves 16 $r; run new halves 16 $r; done
for r in 1 2; do run old halves 8 $r; run new halves 8 $r; done
run old all 16 1; run new all 16 1; run new all 16 2; run old all 16 2
for r in 3 4 5; do run old all 16 $r; run new all 16 $r; done
run old all 1 1; run new all 1 1
