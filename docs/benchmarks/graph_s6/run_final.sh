#!/bin/bash
# environment of the session: cd /work/wt7 && . /work/main/.venv/bin/activate && . /work/main/install/setup.bash
# && export PYTHONPATH=/work/wt7/src/carla_rl:$PYTHONPATH ROS_DOMAIN_ID=71 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# OMP_NUM_THREADS=1; snapshots: git archive <rev> src/carla_rl config | tar -x -C /tmp/s6_main (and /tmp/s6_branch)
. "${ENV_SCRIPT:?path of a script setting the environment above}"
BASEPP=$(echo $PYTHONPATH | sed 's#/work/wt7/src/carla_rl:##')
OUT=/work/wt7/docs/benchmarks/graph_s6/final; mkdir -p $OUT
run() { # code comp N r
  while pgrep -f "pytest" >/dev/null; do echo "waiting for pytest" >&2; sleep 20; done
  PYTHONPATH=/tmp/s6_$1/src/carla_rl:$BASEPP carla-rl bench graph --envs $3 --seconds 15 --json --composition $2 > $OUT/$1_$2_N$3_r$4.json 2> $OUT/$1_$2_N$3_r$4.err
  echo "$(date +%H:%M:%S) $1 $2 N=$3 r=$4 $(python3 -c "import json; d=json.load(open('$OUT/$1_$2_N$3_r$4.json')); print(d['steps_per_s'], d['inprocess_steps_per_s'], d['p50_ms'], d['p99_ms'], d['control_timeouts'])")"
}
for r in 1 2; do
  for N in 2 4 8 12; do
    run main all $N $r
    run branch halves $N $r
    [ $N -le 8 ] && run branch all $N $r
  done
done
for r in 1 2; do
  run main all 16 $r
  run branch halves 16 $r
done
run main all 12 3
run branch halves 12 3
run branch all 12 1
