#!/bin/bash
# Session 7 final graph runs: old code (session 6's halves, 8068e0f) vs new (batch links), both from
# `git archive` snapshots (package + config) so that edits cannot leak into the runs; alternated run by run.
#   OLD=/path/to/old/snapshot NEW=/path/to/new/snapshot OUT=dir bash run_final.sh
cd "$(dirname "$0")/../../.."
. .venv/bin/activate && . install/setup.bash
set -u
export ROS_DOMAIN_ID=71 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST OMP_NUM_THREADS=1
run() {  # code composition N repeat
  local snap=$OLD; [ "$1" = new ] && snap=$NEW
  while pgrep -f pytest >/dev/null; do sleep 5; done
  PYTHONPATH=$snap/src/carla_rl:$PYTHONPATH carla-rl --config $snap/config bench graph --envs $3 --seconds 15 --json --composition $2 \
    > "$OUT/$1_$2_N$3_r$4.json" 2> "$OUT/$1_$2_N$3_r$4.err" || echo "failed: $1 $2 $3 $4"
}
for r in 1 2; do
  run new all 1 $r
  for n in 2 4 8 12 16; do
    run old halves $n $r; run new halves $n $r; run new all $n $r
  done
done
