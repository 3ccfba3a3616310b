#!/bin/bash
# Session 7: old (8068e0f) vs new halves at N envs, learner paused and learning, with the CPU time of every
# process of the graph over the measurement (from /proc, sampled by the benchmark's children's parent: here
# the sum of utime+stime of all component containers, read 20 s after start and 10 s later).
#   OLD=... NEW=... OUT=dir N=16 bash run_learn_cpu.sh
cd "$(dirname "$0")/../../.."
. .venv/bin/activate && . install/setup.bash
set -u
export ROS_DOMAIN_ID=71 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST OMP_NUM_THREADS=1
cpu_ticks() { local t=0; for p in $(pgrep -f component_container_node); do
  t=$((t + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0))); done; echo $t; }
run() {  # code learn(0|1) repeat
  local snap=$OLD; [ "$1" = new ] && snap=$NEW
  local flag=""; [ "$2" = 1 ] && flag="--learn"
  local name="$1_halves_N${N}_learn$2_r$3"
  while pgrep -f pytest >/dev/null; do sleep 5; done
  PYTHONPATH=$snap/src/carla_rl:$PYTHONPATH carla-rl --config $snap/config bench graph --envs $N --seconds 30 \
    --json --composition halves $flag > "$OUT/$name.json" 2> "$OUT/$name.err" &
  local bench=$!
  # the in-process part runs first (30 s), then the graph starts and warms up
  while ! pgrep -f component_container_node >/dev/null; do sleep 1; done
  sleep 25; local c0=$(cpu_ticks); local t0=$(date +%s.%N)
  sleep 10; local c1=$(cpu_ticks); local t1=$(date +%s.%N)
  echo "$name containers_cpu_cores $(python3 -c "print(round(($c1-$c0)/100/($t1-$t0), 3))")" >> "$OUT/cpu.txt"
  wait $bench
}
for r in ${REPEATS:-1 2}; do for learn in 0 1; do run old $learn $r; run new $learn $r; done; done
