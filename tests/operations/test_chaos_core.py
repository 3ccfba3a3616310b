"""The fault campaign's and soak's logic with fakes: schedule, victim choice, report arithmetic."""

import pytest

from carla_rl.graph.chaos import (KILL, STOP, Candidate, ChaosReport, Fault, FaultPicker, ProcSample, RunFigures,
                            SoakReport, check_checkpoints, episodes_lost, fault_times, longest_gap_s,
                            parse_proc_status, steps_after, unrestarted)


def test_fault_times_every_interval_none_at_the_end():
    assert fault_times(2, 20) == [20, 40, 60, 80, 100]
    assert fault_times(1, 60) == []
    assert len(fault_times(30, 60)) == 29
    assert fault_times(2, 20, quiet_s=40) == [20, 40, 60]
    with pytest.raises(ValueError):
        fault_times(1, 0)


def test_picker_is_seeded_skips_stopped_and_exhausted_budgets():
    cands = [Candidate("/a", 1, 5), Candidate("/b", 2, 5), Candidate("/c", 3, 1)]
    picks = [FaultPicker(7).pick(0.0, cands, set()) for _ in range(2)]
    assert picks[0] == picks[1]  # same seed, same choice
    seen = set()
    picker = FaultPicker(3)
    for i in range(200):
        fault = picker.pick(float(i), cands, stopped={2})
        seen.add((fault.name, fault.kind))
    assert seen == {("/a", KILL), ("/a", STOP)}  # /b stopped, /c has one crash left
    assert FaultPicker(0).pick(0.0, [Candidate("/c", 3, 1)], set()) is None
    assert {FaultPicker(s, kinds=(KILL,)).pick(0.0, cands, set()).kind for s in range(20)} == {KILL}
    with pytest.raises(ValueError):
        FaultPicker(0, kinds=("bogus",))


def test_episodes_lost_counts_skipped_ids_and_restarts():
    assert episodes_lost({0: [0, 1, 2, 3]}) == 0
    assert episodes_lost({0: [0, 1, 3, 4]}) == 1  # episode 2 never ended
    assert episodes_lost({0: [5, 6, 0, 1], 1: [0, 2]}) == 2  # env 0 restarted mid-episode; env 1 skipped 1
    assert episodes_lost({}) == 0


def test_longest_gap_and_progress_after():
    samples = [(0, 0), (1, 10), (2, 20), (3, 20), (4, 5), (7, 15), (8, 25), (9, 30)]
    assert longest_gap_s(samples) == 6  # from t=2 (20 steps) until 25 at t=8: a resume below is no growth
    assert longest_gap_s(samples, end_s=20) == 11
    assert longest_gap_s([]) == 0
    assert steps_after(samples, 7.5)
    assert steps_after(samples, 2.5) and not steps_after(samples, 9)
    assert not steps_after([(0, 1), (1, 5), (2, 5)], 1)


def test_check_checkpoints_names_the_bad_ones():
    def verify(path):
        if "bad" in path:
            raise ValueError("SHA-256 mismatch")
    result = check_checkpoints(["a.pt", "bad.pt", "c.pt"], verify)
    assert result.verified == 2 and result.corrupt == ["bad.pt: SHA-256 mismatch"]


def figures(**kw):
    base = dict(seconds=120, ended_by_itself=True, end_reason="stopped after 120 s", phase=3, training_episodes=10,
                env_steps=1000, episodes_lost=1, longest_gap_s=12, checkpoints_verified=3, corrupt_checkpoints=[])
    return RunFigures(**{**base, **kw})


def test_chaos_report_goals():
    faults = [Fault(20, "/dqn_policy", 10, KILL), Fault(40, "/env_container", 11, STOP)]
    good = ChaosReport(faults, {"/dqn_policy": 1, "/env_container": 1}, figures(phase=2), figures(phase=3), [], True)
    assert good.problems() == [] and good.kills == 1 and good.stops == 1
    assert good.to_dict()["restarts_total"] == 2
    bad = ChaosReport(faults, {}, figures(phase=1, ended_by_itself=False, end_reason="failed: crash loop",
                                          corrupt_checkpoints=["x.pt: bad"]),
                      figures(phase=3), ["/env_container"], False)
    problems = bad.problems()
    assert len(problems) == 5, problems
    assert ChaosReport(faults, {}, figures(phase=1), None, [], True).problems() == []  # no baseline: no phase goal


def test_unrestarted():
    faults = [Fault(20, "/a", 1, KILL), Fault(40, "/b", 2, STOP)]
    restarts = {"/a": [21.0], "/b": [10.0]}
    assert unrestarted(faults, lambda n, t: sum(x >= t for x in restarts[n])) == ["/b"]


def test_proc_status_and_soak_report():
    assert parse_proc_status("Name:\tpython\nVmRSS:\t  123456 kB\nThreads:\t7\n") == (123456, 7)
    start = {"/p": ProcSample(100_000, 40, 10), "/q": ProcSample(50_000, 20, 5)}
    flat = SoakReport(60, 600, start, {"/p": ProcSample(104_000, 40, 10), "/q": ProcSample(50_000, 20, 5)},
                      10_000, 3, 3, [])
    assert flat.problems() == []
    assert flat.growth()["/p"]["rss_growth_pct"] == pytest.approx(4.0)
    leaky = SoakReport(60, 600, start, {"/p": ProcSample(106_000, 41, 11), "/q": ProcSample(50_000, 20, 5)},
                       10_000, 4, 3, ["/r"])
    assert len(leaky.problems()) == 5, leaky.problems()
    assert SoakReport(60, 600, {}, {}, 0, 0, 3, []).problems() == ["no process sampled at both start and end"]


def test_soak_ends_count_the_fds_and_threads_a_process_keeps_not_those_held_for_a_moment():
    """A state file written atomically or a short-lived thread in one sample is not growth: each end of the
    soak takes the fewest fds / threads over its window of samples (the same pid only) and the newest RSS."""
    from carla_rl.cli.chaos import steady

    samples = [{"/curriculum_manager": (7, ProcSample(1000 + i, 40, 10)), "/dqn_policy": (8, ProcSample(5000, 60, 20))}
               for i in range(5)]
    samples[2]["/curriculum_manager"] = (7, ProcSample(1002, 41, 11))  # a write in flight
    samples[4]["/dqn_policy"] = (9, ProcSample(6000, 70, 25))  # restarted: compared with itself only
    ends = steady(samples)
    assert ends["/curriculum_manager"] == (7, ProcSample(1004, 40, 10))
    assert ends["/dqn_policy"] == (9, ProcSample(6000, 70, 25))
    samples[3]["/curriculum_manager"] = (7, ProcSample(1003, 41, 10))
    samples[4]["/curriculum_manager"] = (7, ProcSample(1004, 41, 10))
    assert steady(samples[2:])["/curriculum_manager"][1].fds == 41, "an fd held in every sample stays"
