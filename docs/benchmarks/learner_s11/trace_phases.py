"""Per-update phases of a learner benchmark Chrome trace (``--profile --trace-dir DIR``).

Usage: python3 trace_phases.py TRACE.json[.gz] > phases.json

An update is the span between the ends of two consecutive Adam kernels (``triton_for_fused_1``,
the compiled clipping + Adam step of the ``..._copt`` variants). Within it, on the GPU clock:
``forward_us`` until the loss's first kernel (``triton_poi_fused_arange_0``), ``loss_backward_us``
until the gradient norm's reduction, ``optimizer_us`` the rest; ``gaps_on_main_stream`` the idle
stretches over 3 us on the stream that runs the loss and the backward pass (longest first).
Medians over the updates, leaving out the last update of each graph replay (the next replay's
first update samples on the critical path)."""

import collections
import gzip
import json
import statistics
import sys

ADAM = "triton_for_fused_1"
LOSS_START = "triton_poi_fused_arange_0"
NORM = "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::NormTwoOps"


def main(path: str, per_replay: int = 8) -> dict:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        events = json.load(f)["traceEvents"]
    kernels = sorted((e for e in events if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    adam = [e for e in kernels if e["name"].startswith(ADAM)]
    rows, gaps = [], collections.defaultdict(list)
    for i in range(len(adam) - 1):
        start = adam[i]["ts"] + adam[i]["dur"]
        end = adam[i + 1]["ts"] + adam[i + 1]["dur"]
        window = [e for e in kernels if start <= e["ts"] < end]
        if i % per_replay == per_replay - 1:
            continue
        loss = next(e for e in window if e["name"].startswith(LOSS_START))
        norm = next(e for e in window if e["name"].startswith(NORM))
        main_stream = loss["args"]["stream"]
        rows.append({"update_us": end - start, "forward_us": loss["ts"] - start,
                     "loss_backward_us": norm["ts"] - loss["ts"],
                     "optimizer_us": end - norm["ts"], "kernels": len(window),
                     "adam_kernel_us": adam[i + 1]["dur"]})
        on_main = [e for e in window if e["args"]["stream"] == main_stream and e["ts"] >= loss["ts"]]
        for a, b in zip(on_main, on_main[1:]):
            idle = b["ts"] - (a["ts"] + a["dur"])
            if idle > 3:
                gaps[(a["name"][:60], b["name"][:60])].append(idle)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return {"trace": path.rsplit("/", 1)[-1], "updates": len(rows), "median": med,
            "gaps_on_main_stream": [
                {"after": a, "before": b, "updates_with_gap": len(v),
                 "median_us": statistics.median(v)}
                for (a, b), v in sorted(gaps.items(), key=lambda kv: -sum(kv[1]))]}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), indent=2))
