#!/usr/bin/env python3
"""Where the time goes: reads `perf script` output (samples with call stacks, from
`perf record --call-graph dwarf`) on stdin and prints the share of samples per kind of work.

Each sample is put in the first category whose rule matches, rules tried in order on the whole
stack (leaf first): the backward pass of each op is told apart by the autodiff frames above it.
Also writes folded stacks (for flamegraph.pl / inferno) when given --folded FILE.
"""

import argparse
import collections
import re
import sys

# The kind of work of a sample is read off the innermost burn-flex op on its stack (the
# function that does the work, forward or backward; autodiff runs the same ops backwards), then
# the leaf tells a matrix product's operand copies from its GEMM kernel.
FLEX_OP = re.compile(r"burn_flex::(ops::(\w+)|tensor::(\w+)|zip::(\w+))")
KINDS = {
    "attention": "attention (burn's fused kernel, forward)",
    "conv": "convolution (flex's im2col + GEMM: inference, stride-2 down-sampling)",
    "conv_transpose": "transposed convolution (up-sampling)",
    "matmul": "matrix products (im2col convolutions in training, their gradients, linear attention)",
    "cat": "copies (concatenation: skips, im2col taps)",
    "slice": "copies (slices and their gradients' slice-assign)",
    "expand": "copies (broadcast)",
    "unary": "element-wise (SiLU, sigmoid, exp, sqrt, ...)",
    "binary": "element-wise (add, sub, mul, div)",
    "activation": "element-wise (softmax, GELU)",
    "reduce": "reductions (GroupNorm statistics, sums of gradients)",
    "float": "element-wise and layout (float ops)",
}
LEAF_COPY = re.compile(r"copy_2d_tiled|memmove|memcpy|memset|copy_strided|clone")
LEAF_GEMM = re.compile(r"gemm_|microkernel")
LEAF_MATH = re.compile(r"expf|__exp|tanhf|logf|erff|sqrtf")
LEAF_ALLOC = re.compile(r"malloc|_int_free|cfree|__libc_free|realloc|page_fault|clear_page|do_anonymous_page")


def classify(frames):
    leaf = frames[0]
    if LEAF_ALLOC.search(leaf):
        return "allocation (malloc/free, page faults)"
    for f in frames:
        m = FLEX_OP.search(f)
        if not m:
            continue
        op = m.group(2) or m.group(3) or m.group(4)
        if op == "matmul" and LEAF_COPY.search(leaf):
            return "copies (matrix-product operands made contiguous)"
        if op.startswith("zip") or op in ("binary_op", "scalar_op", "bool", "collapse_for_zip"):
            return KINDS["binary"]
        if op.startswith("copy") or op == "FlexTensor":
            return "copies (layout: permuted or sliced tensors made contiguous)"
        return KINDS.get(op, f"other flex op ({op})")
    if any("burn_autodiff" in f for f in frames):
        return "autodiff graph bookkeeping"
    # A rayon worker's stack is cut off above the job (perf's copied stack ends there): such a
    # sample names no op, so its leaf says what kind of work it was.
    if LEAF_GEMM.search(leaf):
        return "GEMM kernels on worker threads (convolutions, matrix products; op not on the stack)"
    if LEAF_COPY.search(leaf):
        return "copies on worker threads (op not on the stack)"
    if LEAF_MATH.search(leaf):
        return KINDS["unary"]
    if re.search(r"futex|sched_yield|crossbeam|wait_until|sleep|steal|park|schedule|switch", leaf):
        return "thread pool (rayon) waiting"
    if any(re.search(r"rayon", f) for f in frames):
        return "work inside a rayon job (its closure inlined: conv tiles' im2col, attention rows)"
    return "other (set-up, data, optimizer outside flex ops)"


def frames_of(block):
    """Function names of one sample, leaf first."""
    out = []
    for line in block[1:]:
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            name = re.sub(r"\+0x[0-9a-f]+$", "", parts[1].split(" (")[0])
            out.append(name)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--title", default="profile")
    ap.add_argument("--folded")
    a = ap.parse_args()
    counts = collections.Counter()
    folded = collections.Counter()
    block = []
    total = 0

    def flush():
        nonlocal total
        if not block:
            return
        fr = frames_of(block)
        if fr:
            counts[classify(fr)] += 1
            folded[";".join(reversed(fr))] += 1
            total += 1

    for line in sys.stdin:
        if line.strip() == "":
            flush()
            block = []
        else:
            block.append(line.rstrip("\n"))
    flush()
    if total == 0:
        print("no samples", file=sys.stderr)
        return 1
    print(f"| {a.title}: kind of work | share of samples |")
    print("|---|---|")
    for name, n in counts.most_common():
        print(f"| {name} | {100.0 * n / total:.1f} % |")
    print(f"| (samples) | {total} |")
    if a.folded:
        with open(a.folded, "w") as f:
            for k, n in folded.items():
                f.write(f"{k} {n}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
