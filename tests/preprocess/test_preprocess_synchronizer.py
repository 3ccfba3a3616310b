"""StepSynchronizer: completion by step id, announced events, drops, bounded memory."""

from carla_rl.preprocess import DropReason, StepSynchronizer
from carla_rl.contract.sensor_frame import EgoSituation

REQUIRED = ("camera", "odometry", "situation")
EVENT_FIELDS = {"collision": "collision_events", "lane_invasion": "lane_invasion_events"}


def make_sync(**kwargs) -> StepSynchronizer:
    return StepSynchronizer(REQUIRED, event_count_fields=EVENT_FIELDS, announcer="situation",
                            **kwargs)


def add_tick(sync, step_id, collisions=0, invasions=0, send_events=True):
    result = None
    for kind in ("camera", "odometry"):
        result = sync.add(kind, step_id, f"{kind}-{step_id}") or result
    if send_events:
        for i in range(collisions):
            result = sync.add("collision", step_id, f"collision-{step_id}-{i}") or result
        for i in range(invasions):
            result = sync.add("lane_invasion", step_id, f"invasion-{step_id}-{i}") or result
    situation = EgoSituation(step_id=step_id, collision_events=collisions,
                             lane_invasion_events=invasions)
    return sync.add("situation", step_id, situation) or result


def test_completes_when_all_required_kinds_arrive():
    completed = []
    sync = make_sync(on_complete=completed.append)
    assert sync.add("camera", 5, "cam") is None
    assert sync.add("situation", 5, EgoSituation(step_id=5)) is None
    bundle = sync.add("odometry", 5, "odom")
    assert bundle is not None and completed == [bundle]
    assert bundle.step_id == 5 and bundle.messages["camera"] == "cam"
    assert bundle.events == {"collision": [], "lane_invasion": []}
    assert sync.pending_steps == () and sync.completed == 1


def test_waits_for_announced_events_in_any_order():
    sync = make_sync()
    sync.add("camera", 7, "cam")
    sync.add("odometry", 7, "odom")
    assert sync.add("situation", 7, EgoSituation(collision_events=2, lane_invasion_events=1)) \
        is None
    assert sync.add("collision", 7, "c0") is None
    assert sync.add("lane_invasion", 7, "l0") is None
    bundle = sync.add("collision", 7, "c1")
    assert bundle.events == {"collision": ["c0", "c1"], "lane_invasion": ["l0"]}


def test_events_before_the_announcement_are_kept():
    bundle = add_tick(make_sync(), 3, collisions=1, invasions=2)
    assert len(bundle.events["collision"]) == 1 and len(bundle.events["lane_invasion"]) == 2


def test_newer_complete_step_drops_older_incomplete_ones():
    sync = make_sync()
    sync.add("camera", 1, "cam")                       # step 1 never completes
    add_tick(sync, 2, collisions=1, send_events=False)  # step 2 waits for its collision
    assert add_tick(sync, 3).step_id == 3
    assert sync.dropped[DropReason.INCOMPLETE] == 2
    assert sync.pending_steps == ()
    assert sync.add("collision", 2, "late") is None     # step 2 is closed now
    assert sync.dropped[DropReason.LATE] == 1


def test_messages_after_completion_are_late():
    sync = make_sync()
    add_tick(sync, 4)
    assert sync.add("camera", 4, "again") is None
    assert sync.add("collision", 4, "unannounced") is None
    assert sync.dropped[DropReason.LATE] == 2


def test_bounded_memory_drops_oldest_step():
    sync = make_sync(max_pending_steps=3)
    for step in range(10, 15):
        sync.add("camera", step, "cam")
    assert sync.pending_steps == (12, 13, 14)
    assert sync.dropped[DropReason.OVERFLOW] == 2
    assert sync.add("camera", 11, "late") is None       # 11 was dropped: late
    assert sync.dropped[DropReason.LATE] == 1
    assert add_tick(sync, 14).step_id == 14


def test_duplicates_unknown_kinds_and_extra_events_are_counted():
    sync = make_sync()
    sync.add("camera", 1, "first")
    sync.add("camera", 1, "second")
    sync.add("radar", 1, "unknown")
    sync.add("collision", 1, "c0")
    sync.add("collision", 1, "c1")
    sync.add("odometry", 1, "odom")
    bundle = sync.add("situation", 1, EgoSituation(collision_events=1))
    assert bundle.messages["camera"] == "second"
    assert bundle.events["collision"] == ["c0"]
    assert sync.dropped[DropReason.DUPLICATE] == 1
    assert sync.dropped[DropReason.UNKNOWN_KIND] == 1
    assert sync.dropped[DropReason.UNEXPECTED_EVENT] == 1


def test_reset_accepts_restarted_step_ids():
    sync = make_sync()
    add_tick(sync, 100)
    assert add_tick(sync, 0) is None
    sync.reset()
    assert add_tick(sync, 0).step_id == 0


def test_without_announcer():
    sync = StepSynchronizer(("a", "b"))
    assert sync.add("a", 1, 1) is None
    assert sync.add("b", 1, 2).messages == {"a": 1, "b": 2}
