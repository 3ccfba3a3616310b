#!/usr/bin/env bash
# Run the whole test suite with DDS isolated: a private ROS_DOMAIN_ID per run, localhost discovery.
# pytest's exit code is returned unchanged (5 = no tests collected is a failure here, never hidden).
set -uo pipefail
cd "$(dirname "$0")/.."
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_BUILTIN_TRANSPORTS=${FASTDDS_BUILTIN_TRANSPORTS:-LARGE_DATA}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export SDL_VIDEODRIVER=dummy MPLBACKEND=Agg
echo "run_tests: ROS_DOMAIN_ID=$ROS_DOMAIN_ID (localhost discovery)"
# no path among the arguments: pytest.ini's testpaths (tests/); `bash scripts/run_tests.sh tests/sim -q`: those
python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "run_tests: pytest collected no tests: failing" >&2; fi
exit $rc
