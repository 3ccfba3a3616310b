#!/usr/bin/env bash
# Container entrypoint: source ROS + our workspace (+ the bridge workspace in the bridge image), point
# the CARLA client at $CARLA_HOST / $CARLA_PORT (a copy of config/ with carla_client.carla.host/port set),
# then run the command.
set -eo pipefail
source "/opt/ros/${ROS_DISTRO}/setup.bash"
if [[ -n "${CARLA_RL_EXTRA_SETUP:-}" && -f "${CARLA_RL_EXTRA_SETUP}" ]]; then
  source "${CARLA_RL_EXTRA_SETUP}"
fi
source /ws/install/setup.bash
if [[ -n "${CARLA_HOST:-}" || -n "${CARLA_PORT:-}" ]]; then
  cfg=/tmp/carla_rl_config
  rm -rf "$cfg" && cp -r /ws/config "$cfg"
  # config/carla.yaml has exactly one `host:` and one `port:` key (tests/carla/test_containers.py checks it)
  [[ -n "${CARLA_HOST:-}" ]] && sed -i -E "s/^(\s*host:).*/\1 ${CARLA_HOST}/" "$cfg/carla.yaml"
  [[ -n "${CARLA_PORT:-}" ]] && sed -i -E "s/^(\s*port:).*/\1 ${CARLA_PORT}/" "$cfg/carla.yaml"
  export CARLA_RL_CONFIG_DIR="$cfg"
fi
exec "$@"
