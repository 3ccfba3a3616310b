"""carla-rl bench graph: the steps of a measurement window come from each simulator's tick counter; a counter
that went back (a restarted simulator) gives no figure instead of a wrong one."""

import pytest

from carla_rl.bench.graph import window_counts


def test_window_steps_per_simulator():
    ticks0 = {"/env_0/embedded_simulator": 100, "/env_1/embedded_simulator": 90}
    ticks1 = {"/env_0/embedded_simulator": 400, "/env_1/embedded_simulator": 150, "/env_2/embedded_simulator": 7}
    assert window_counts(ticks0, ticks1) == {"/env_0/embedded_simulator": 300, "/env_1/embedded_simulator": 60,
                                             "/env_2/embedded_simulator": 7}


def test_a_count_that_went_back_is_refused_by_name():
    with pytest.raises(ValueError, match=r"tick count of /env_1/embedded_simulator went back"):
        window_counts({"/env_0/embedded_simulator": 5, "/env_1/embedded_simulator": 500},
                      {"/env_0/embedded_simulator": 50, "/env_1/embedded_simulator": 20})


def test_learner_rate_from_the_window_s_training_stats():
    from types import SimpleNamespace

    from carla_rl.bench.graph import learner_rate

    def stats(sec, nanosec, updates):
        return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)),
                               updates=updates)

    assert learner_rate([stats(10, 0, 100), stats(11, 0, 130), stats(12, 500_000_000, 175)]) == 30.0
    assert learner_rate([stats(10, 0, 100)]) is None
    assert learner_rate([]) is None


def test_a_learning_window_waits_for_the_learner_s_first_updates():
    from types import SimpleNamespace

    from carla_rl.bench.graph import learner_started

    assert not learner_started([])
    assert not learner_started([SimpleNamespace(updates=0), SimpleNamespace(updates=0)])
    assert learner_started([SimpleNamespace(updates=0), SimpleNamespace(updates=8)])
