"""Per-layer times of onnxruntime on an ONNX model, to set beside
`cargo run --release -p incept-interp --example conv_profile -- MODEL.pth [threads] [batch]`.

Run in the repo's venv: `.venv/bin/python xtask/bench/ort_profile.py fixtures/full/ts_folded.onnx [threads] [batch]`.
Prints each node's median kernel time (over 20 runs, 6 for a batch) in ms for the whole batch, in
execution order, and their sum.
"""

import collections
import json
import os
import sys

import numpy as np
import onnxruntime as ort


def main() -> int:
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, 299, 299), dtype=np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(20 if batch == 1 else 6):
        sess.run(None, {name: x})
    trace = sess.end_profiling()
    events = json.load(open(trace))
    os.remove(trace)
    times = collections.OrderedDict()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            key = (e["name"][: -len("_kernel_time")], e["args"].get("op_name", ""))
            times.setdefault(key, []).append(e["dur"])
    total = 0.0
    for (node, op), durs in times.items():
        median = sorted(durs)[len(durs) // 2] / 1000
        total += median
        print(f"{node[:60]:60} {op:20} {median:7.3f}")
    print(f"total {total:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
