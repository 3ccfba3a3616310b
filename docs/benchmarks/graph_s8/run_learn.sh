#!/bin/bash
# Session 8: the graph with the learner running (--learn), old (358d26f) vs new (this session) snapshots,
# alternated, 30-s windows.   OLD=... NEW=... OUT=dir bash run_learn.sh
cd "$(dirname "$0")/../../.."
. .venv/bin/activate && . install/setup.bash
set -u
export ROS_DOMAIN_ID=82 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST OMP_NUM_THREADS=1
run() {  # code composition N repeat
  local snap=$OLD; [ "$1" = new ] && snap=$NEW
  PYTHONPATH=$snap/src/carla_rl:$PYTHONPATH carla-rl --config $snap/config bench graph --envs $3 --seconds 30 --learn --json \
    --composition $2 > "$OUT/$1_$2_N$3_learn_r$4.json" 2> "$OUT/$1_$2_N$3_learn_r$4.err" || echo "failed: $1 $2 $3 $4"
}
for r in 1 2; do run old halves 16 $r; run new halves 16 $r; done
for r in 1 2; do run old envs 2 $r; run new envs 2 $r; done  # make train: --parallel-envs 2, composition envs
