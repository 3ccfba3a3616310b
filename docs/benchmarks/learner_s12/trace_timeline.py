"""One update's kernel timeline and per-update medians from a learner benchmark Chrome trace
(``carla-rl bench learner --profile --trace-dir DIR``).

Usage: python3 trace_timeline.py TRACE.json[.gz] MARKER [UPDATE] > timeline.txt

MARKER: the name prefix of a kernel that runs once per update at its end (the Adam kernel:
``triton_for_fused_1`` for the per-parameter compiled step, ``triton_poi_fused_add_clamp_copy__div_lerp``
for the flat step). Updates are the spans between the ends of consecutive markers; the last update
of each 8-update graph replay is left out of the medians (the next replay's first update samples on
the critical path). Printed: the medians (update, kernels, GPU idle = no kernel or memset on any
stream), then UPDATE's (default 9) kernels: start and duration in us from the previous marker's
end, stream, name, grid."""

import gzip
import json
import statistics
import sys


def main(path: str, marker: str, update: int = 9, per_replay: int = 8) -> None:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        events = json.load(f)["traceEvents"]
    gpu = sorted((e for e in events if e.get("cat") in ("kernel", "gpu_memset")),
                 key=lambda e: e["ts"])
    ends = [e["ts"] + e["dur"] for e in gpu if e["name"].startswith(marker)]
    spans, kernels, idle = [], [], []
    for i in range(len(ends) - 1):
        if i % per_replay == per_replay - 1:
            continue
        window = [e for e in gpu if ends[i] <= e["ts"] < ends[i + 1]]
        busy, gap = ends[i], 0.0
        for e in window:
            gap += max(0.0, e["ts"] - busy)
            busy = max(busy, e["ts"] + e["dur"])
        spans.append(ends[i + 1] - ends[i])
        kernels.append(len(window))
        idle.append(gap + max(0.0, ends[i + 1] - busy))
    print(json.dumps({"trace": path.rsplit("/", 1)[-1], "updates": len(spans),
                      "median_update_us": statistics.median(spans),
                      "median_kernels": statistics.median(kernels),
                      "median_gpu_idle_us": statistics.median(idle)}))
    start = ends[update]
    window = [e for e in gpu if start <= e["ts"] < ends[update + 1]]
    streams = sorted({e["args"].get("stream") for e in window}, key=str)
    for e in window:
        s = streams.index(e["args"].get("stream"))
        print(f"{e['ts'] - start:7.1f} {e['dur']:6.1f} s{s} {'  ' * s}{e['name'][:90]} "
              f"{e['args'].get('grid')}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
