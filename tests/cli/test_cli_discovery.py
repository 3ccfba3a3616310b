"""`carla-rl` keeps DDS discovery on this host unless the environment says otherwise."""


def test_the_cli_keeps_discovery_on_this_host_unless_told_otherwise():
    from carla_rl.cli.main import limit_discovery

    unset, empty, subnet = {}, {"ROS_AUTOMATIC_DISCOVERY_RANGE": ""}, {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    assert limit_discovery(unset) == "LOCALHOST" and unset["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert limit_discovery(empty) == "LOCALHOST"
    assert limit_discovery(subnet) == "SUBNET"
