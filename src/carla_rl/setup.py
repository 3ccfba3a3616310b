"""ament_python package carla_rl. launch/ and config/ live at the workspace top level and are
installed to share/carla_rl/ so `ros2 launch carla_rl ...` and get_package_share_directory find them."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "carla_rl"
HERE = Path(__file__).resolve().parent
TOP = HERE.parent.parent  # the workspace root: launch/, config/


def _rel(pattern: str) -> list[str]:
    import os

    return sorted(os.path.relpath(p, HERE) for p in glob(str(TOP / pattern)))


# node executables: <name> = carla_rl.nodes.<name>_node:main
NODES = [
    "embedded_simulator",
    "sensor_preprocessor",
    "dqn_policy",
    "reward_evaluator",
    "curriculum_manager",
    "carla_client",
    "carla_bridge_adapter",
    "mcap_replay",
    "training_monitor",
    "batch_link",  # composition halves: a batch per group of envs and tick between the containers
    "component_container",  # hosts several of the above in one process (graph composition)
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        ("bin", sorted(glob("bin/*"))),  # `carla-rl` and every node on PATH after sourcing setup.bash
        (f"share/{PACKAGE}/launch", _rel("launch/*.py")),
        (f"share/{PACKAGE}/config", _rel("config/*.yaml") + _rel("config/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="carla_rl maintainers",
    maintainer_email="maintainers@carla-rl.dev",
    description="Deep RL driving stack with a curriculum, on CARLA or an embedded simulator",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{name} = {PACKAGE}.nodes.{name}_node:main" for name in NODES]
        + ["carla-rl = carla_rl.cli.main:main"],
        "gymnasium.envs": ["carla_rl = carla_rl.sim.driving_env:register_envs"],
    },
)
