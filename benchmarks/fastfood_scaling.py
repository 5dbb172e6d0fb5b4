"""Fast Walsh-Hadamard transform vs a dense Hadamard product: time and scaling.

Fastfood over all T5-base weights needs transforms of length up to 2^25 (the padded embedding);
a dense Hadamard matrix of that size could never exist. This prints, for a batch of vectors,
the FWHT time next to the dense matmul time where the dense matrix fits (n ≤ 2^14, 1 GiB), then
FWHT alone up to 2^22, and the log-log slopes: ~2 for dense (n²), ~1 for FWHT against n log n.
Times are process CPU time on one thread by default: scaling is the point, and on a shared
2-core machine wall time mostly measures waiting for a core (with --threads N > 1 the CPU time
sums over threads, so it is no longer a duration).

    .venv/bin/python benchmarks/fastfood_scaling.py [--threads N]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from deltaspace.subspace.fastfood import fwht

BATCH = 4
DENSE_MAX_BYTES = 1 << 30
MIN_SECONDS = 0.2  # repeat each measurement at least this long (and 5 times); report the best


def sylvester(n: int) -> torch.Tensor:
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def best_time(fn) -> float:
    """Least process CPU time of repeated calls, after one warm-up call."""
    fn()
    times, spent = [], 0.0
    while spent < MIN_SECONDS or len(times) < 5:
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
        spent += times[-1]
    return min(times)


def slope(ns: list[int], times: list[float], cost=lambda n: n) -> float:
    """Least-squares slope of log(time) against log(cost(n))."""
    xs = [math.log(cost(n)) for n in ns]
    ys = [math.log(t) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    torch.set_num_threads(parser.parse_args().threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {BATCH}, float32, "
          "best process CPU time")
    print(f"{'n':>9} {'FWHT ms':>10} {'dense ms':>10} {'dense/FWHT':>11}")
    ns, fast, dense_ns, dense = [], [], [], []
    for k in range(10, 23):
        n = 1 << k
        x = torch.randn(BATCH, n)
        ns.append(n)
        fast.append(best_time(lambda: fwht(x)))
        row = f"{'2^' + str(k):>9} {fast[-1] * 1e3:>10.3f}"
        if 4 * n * n <= DENSE_MAX_BYTES:
            h = sylvester(n)
            torch.testing.assert_close(fwht(x), x @ h, rtol=1e-4, atol=1e-3)  # float32 sums
            dense_ns.append(n)
            dense.append(best_time(lambda: x @ h))
            row += f" {dense[-1] * 1e3:>10.3f} {dense[-1] / fast[-1]:>11.1f}"
            del h
        print(row)
    print(f"dense slope of log t vs log n, 2^10..2^14: {slope(dense_ns, dense):.2f}  (n^2 -> 2)")
    # Below ~2^15 the log2(n) passes' fixed per-op cost dominates; past 2^20 (16 MB for the batch)
    # the data leaves the last-level cache and every pass becomes memory-bound.
    for top in (20, 22):
        window = [i for i, n in enumerate(ns) if 1 << 15 <= n <= 1 << top]
        n_w, t_w = [ns[i] for i in window], [fast[i] for i in window]
        print(f"FWHT slope of log t vs log(n log2 n), 2^15..2^{top}: "
              f"{slope(n_w, t_w, lambda n: n * math.log2(n)):.2f}  (n log n -> 1)")


if __name__ == "__main__":
    main()
