"""Verifier throughput: math checks/s and sandboxed programs/s, each against an unprotected baseline measured
in the same run (ratios), on whatever machine runs it.

Run: python bench/verify.py [--pairs 600] [--programs 60]

- math: `check_many` (cheap exact cases in-process, the rest in 2 killable math-verify workers) versus calling
  math-verify directly in this process with its timeouts off (fast, but one hostile answer would hang it).
- code: `run_many` (namespaced sandbox, fresh `python -I -S` per test) versus plain `subprocess.run` per test
  (no isolation at all), both with 2 programs at a time.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from promptcot_pl.domains import build_domain
from promptcot_pl.verify.code import run_many
from promptcot_pl.verify.math import check_many


def math_pairs(n: int, seed: int = 11) -> dict[str, list[tuple[str, str]]]:
    """Distinct (pred, ref) pairs in the styles models write, in two sets:
    `mixed` — the same value written differently or a wrong value (most are decided in-process);
    `latex` — radicals, tuples, sets, symbolic forms that always need math-verify in a worker."""
    rng = random.Random(seed)
    refs = [t.answer for t in build_domain("math", n, seed=seed)]
    mixed, latex = [], []
    for i, ref in enumerate(refs):
        k = i + 2
        mixed.append(rng.choice([(f"x = {ref}", ref), (f"{ref} \\text{{ units}}", ref), (f"{ref} + 1", ref),
                                 (f"\\left({ref}\\right)", ref), (f"\\sqrt{{{k * k}}}", str(k))]))
        latex.append(rng.choice([(f"\\sqrt{{{k * k * 2}}}", f"{k}\\sqrt{{2}}"), (f"({k}, {ref})", f"({k},{ref})"),
                                 (f"\\{{{k}, 1\\}}", f"\\{{1, {k}\\}}"), (f"{k}x + x", f"{k + 1}x"),
                                 (f"\\frac{{{k}\\pi}}{{2}}", f"{k}\\pi/2")]))
    return {"mixed": mixed, "latex": latex}


def bench_math(n: int) -> None:
    sets = math_pairs(n)
    ours: dict[str, float] = {}
    check_many([("\\sqrt{8}", "2\\sqrt{2}")])  # start the workers outside the timing
    for name, pairs in sets.items():
        start = time.perf_counter()
        results = check_many(pairs)
        rate = ours[name] = len(pairs) / (time.perf_counter() - start)
        print(f"math   check_many, {name:5s} answers: {rate:9.1f} checks/s ({sum(r is None for r in results)} undecided "
              f"of {len(pairs)})")

    logging.disable(logging.WARNING)
    from math_verify import parse, verify

    def direct(pred: str, ref: str) -> bool:
        return verify(parse(f"${ref}$", parsing_timeout=None), parse(f"${pred}$", parsing_timeout=None),
                      timeout_seconds=None)

    fresh = math_pairs(n, seed=12)  # new strings: math-verify caches some parses
    direct(*fresh["latex"][0])
    for name, pairs in fresh.items():
        start = time.perf_counter()
        for pred, ref in pairs:
            direct(pred, ref)
        rate = len(pairs) / (time.perf_counter() - start)
        print(f"math   baseline (math-verify in-process, unprotected, 1 core), {name:5s}: {rate:9.1f} checks/s   "
              f"ratio ours/baseline {ours[name] / rate:.2f}")


def bench_code(n: int) -> None:
    trivial = [(f"print(input())  # {i}", [{"input": f"{i}\n", "output": f"{i}\n"}]) for i in range(n)]
    domain = [(t.solution.removeprefix("```python\n").removesuffix("```"), t.tests)
              for t in build_domain("code", n, seed=5)]

    def plain(job):  # baseline: no sandbox at all
        code, tests = job
        return all(subprocess.run([sys.executable, "-I", "-S", "-c", code], input=t["input"], capture_output=True,
                                  text=True, timeout=10).stdout.strip() == t["output"].strip() for t in tests)

    for name, jobs in (("trivial, 1 test", trivial), ("code domain, 4 tests", domain)):
        start = time.perf_counter()
        verdicts = run_many(jobs, workers=2)
        ours = len(jobs) / (time.perf_counter() - start)
        with ThreadPoolExecutor(max_workers=2) as pool:
            start = time.perf_counter()
            plain_ok = list(pool.map(plain, jobs))
            baseline = len(jobs) / (time.perf_counter() - start)
        assert all(v.passed for v in verdicts) and all(plain_ok), "benchmark programs must pass"
        print(f"code   {name:22s} sandbox: {ours:6.1f} programs/s   plain subprocess: {baseline:6.1f} programs/s   "
              f"ratio {ours / baseline:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--programs", type=int, default=60)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    bench_math(args.pairs)
    bench_code(args.programs)


if __name__ == "__main__":
    main()
