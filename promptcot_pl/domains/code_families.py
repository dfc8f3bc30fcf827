"""Task families of the built-in code domain (a stand-in for the paper's Codeforces seeds).

A family draws its parameters, then returns the rationale (which fixes them), the statement, a reference
Python solution (stdin → stdout) and a generator of random test inputs. Expected outputs are produced by
running the reference solution on each input (see `code.py`), so tests and solution cannot disagree.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class CodeTask:
    concepts: list[str]
    rationale: str
    statement: str
    solution: str
    make_input: Callable[[random.Random], str]


def _numbers(rng: random.Random, lo: int, hi: int, n_max: int) -> str:
    n = rng.randint(1, n_max)
    return f"{n}\n{' '.join(str(rng.randint(lo, hi)) for _ in range(n))}\n"


def sum_multiples(rng: random.Random, level: int) -> CodeTask:
    k = rng.randint(2, 9)
    return CodeTask(
        ["arrays", "divisibility", "linear scan"],
        f"Scan an array once and add the elements divisible by {k}; negative numbers test the modulo semantics.",
        f"The first line holds n, the second n integers. Print the sum of the integers that are divisible by {k}.",
        f"n = int(input())\na = list(map(int, input().split()))\nprint(sum(x for x in a if x % {k} == 0))\n",
        lambda r: _numbers(r, -50, 100, 8 + 10 * level))


def max_window(rng: random.Random, level: int) -> CodeTask:
    w = rng.randint(2, 4 + level)
    return CodeTask(
        ["sliding window", "prefix sums", "arrays"],
        f"Find the largest sum of {w} consecutive elements with a sliding window in O(n); inputs have at least {w} "
        f"elements and may be negative.",
        f"The first line holds n (n >= {w}), the second n integers. Print the maximum sum of {w} consecutive integers.",
        f"n = int(input())\na = list(map(int, input().split()))\ns = sum(a[:{w}])\nbest = s\n"
        f"for i in range({w}, n):\n    s += a[i] - a[i - {w}]\n    best = max(best, s)\nprint(best)\n",
        lambda r: (lambda n: f"{n}\n{' '.join(str(r.randint(-20, 30)) for _ in range(n))}\n")(r.randint(w, w + 10)))


def reverse_words(rng: random.Random, level: int) -> CodeTask:
    case = rng.choice(["upper", "lower"])
    return CodeTask(
        ["string manipulation", "tokenization", "reversal"],
        f"Split a line into words, reverse their order and print them in {case} case, joined by single spaces.",
        f"Read one line of words separated by spaces. Print the words in reverse order, in {case} case, "
        f"separated by single spaces.",
        f"print(' '.join(reversed(input().split())).{case}())\n",
        lambda r: " ".join(r.choice(["Alpha", "beta", "Gamma", "delta", "EPS", "zeta", "Eta"])
                           for _ in range(r.randint(1, 6 + 2 * level))) + "\n")


def count_class(rng: random.Random, level: int) -> CodeTask:
    name, test = rng.choice([("vowels", "c in 'aeiouAEIOU'"), ("digits", "c.isdigit()"),
                             ("uppercase letters", "c.isupper()")])
    return CodeTask(
        ["strings", "character classes", "counting"],
        f"Count the {name} of one input line with a single pass over its characters.",
        f"Read one line of text. Print how many {name} it contains.",
        f"s = input()\nprint(sum(1 for c in s if {test}))\n",
        lambda r: "".join(r.choice("abcdeIOUxyz0123 XYZ") for _ in range(r.randint(1, 15 + 10 * level))) + "\n")


def fibonacci_mod(rng: random.Random, level: int) -> CodeTask:
    m = rng.choice([7, 10, 97, 1000, 10007])
    return CodeTask(
        ["dynamic programming", "Fibonacci numbers", "modular arithmetic"],
        f"Iterate the Fibonacci recurrence keeping values modulo {m}, with F(0)=0 and F(1)=1.",
        f"Read n (0 <= n <= 10000). Print F(n) modulo {m}, where F(0)=0, F(1)=1, F(n)=F(n-1)+F(n-2).",
        f"n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, (a + b) % {m}\nprint(a % {m})\n",
        lambda r: f"{r.randint(0, 30 + 300 * level)}\n")


def gcd_all(rng: random.Random, level: int) -> CodeTask:
    use_lcm = level > 0 and rng.random() < 0.5
    op = "least common multiple" if use_lcm else "greatest common divisor"
    body = "r = r * x // math.gcd(r, x)" if use_lcm else "r = math.gcd(r, x)"
    start = "1" if use_lcm else "0"
    return CodeTask(
        ["number theory", "Euclidean algorithm", "reduction over arrays"],
        f"Fold the {op} over all n positive integers using the Euclidean algorithm.",
        f"The first line holds n, the second n positive integers. Print their {op}.",
        f"import math\nn = int(input())\nr = {start}\nfor x in map(int, input().split()):\n    {body}\nprint(r)\n",
        lambda r: (lambda g: f"3\n{' '.join(str(g * r.randint(1, 9)) for _ in range(3))}\n")(r.randint(1, 12)))


def count_primes_upto(rng: random.Random, level: int) -> CodeTask:
    return CodeTask(
        ["prime numbers", "sieve of Eratosthenes", "arrays"],
        "Sieve of Eratosthenes up to n, then count the primes that remain marked.",
        "Read n (1 <= n <= 100000). Print the number of primes p with p <= n.",
        "n = int(input())\nsieve = [True] * (n + 1)\nsieve[0] = False\nif n >= 1:\n    sieve[1] = False\n"
        "for i in range(2, int(n ** 0.5) + 1):\n    if sieve[i]:\n        sieve[i * i :: i] = [False] * len(sieve[i * i :: i])\n"
        "print(sum(sieve))\n",
        lambda r: f"{r.randint(1, 50 + 500 * level)}\n")


def kth_order(rng: random.Random, level: int) -> CodeTask:
    side = rng.choice(["smallest", "largest"])
    key = "" if side == "smallest" else ", reverse=True"
    return CodeTask(
        ["sorting", "order statistics", "arrays"],
        f"Sort the array and index it to get the k-th {side} element (1-based k).",
        f"The first line holds n and k, the second n integers. Print the k-th {side} integer (k is 1-based).",
        f"n, k = map(int, input().split())\na = sorted(map(int, input().split()){key})\nprint(a[k - 1])\n",
        lambda r: (lambda n: f"{n} {r.randint(1, n)}\n{' '.join(str(r.randint(-9, 40)) for _ in range(n))}\n")(
            r.randint(1, 9)))


def palindrome(rng: random.Random, level: int) -> CodeTask:
    ignore_case = rng.random() < 0.5
    norm = "s.lower()" if ignore_case else "s"
    rule = "ignoring letter case" if ignore_case else "with letter case significant"
    return CodeTask(
        ["strings", "two pointers", "palindromes"],
        f"Compare a string with its reverse, {rule}; answer YES or NO.",
        f"Read a word. Print YES if it is a palindrome ({rule}), otherwise NO.",
        f"s = input().strip()\nt = {norm}\nprint('YES' if t == t[::-1] else 'NO')\n",
        lambda r: (lambda h: h + r.choice(["", "a", "X"]) + (h[::-1] if r.random() < 0.6 else h[::-1].upper()))(
            "".join(r.choice("abAB") for _ in range(r.randint(1, 5)))) + "\n")


def balanced_brackets(rng: random.Random, level: int) -> CodeTask:
    pairs = ["()", "()[]", "()[]{}"][level]
    return CodeTask(
        ["stacks", "bracket matching", "parsing"],
        f"Match the brackets {pairs} with a stack; a closing bracket must match the most recent opener.",
        f"Read a string made of the characters {pairs}. Print YES if its brackets are balanced, otherwise NO.",
        f"s = input().strip()\nmatch = {{c: o for o, c in zip({pairs!r}[::2], {pairs!r}[1::2])}}\nstack = []\nok = True\n"
        "for ch in s:\n    if ch in match:\n        if not stack or stack.pop() != match[ch]:\n            ok = False\n"
        "            break\n    else:\n        stack.append(ch)\nprint('YES' if ok and not stack else 'NO')\n",
        lambda r: "".join(r.choice(pairs) for _ in range(r.choice([2, 4, 6]))) + "\n")


def range_sums(rng: random.Random, level: int) -> CodeTask:
    return CodeTask(
        ["prefix sums", "range queries", "arrays"],
        "Precompute prefix sums once so every query l..r (1-based, inclusive) is answered in O(1).",
        "The first line holds n and q, the second n integers, then q lines with l and r (1-based, inclusive). "
        "For each query print the sum of elements l..r on its own line.",
        "n, q = map(int, input().split())\na = list(map(int, input().split()))\np = [0]\nfor x in a:\n"
        "    p.append(p[-1] + x)\nfor _ in range(q):\n    l, r = map(int, input().split())\n    print(p[r] - p[l - 1])\n",
        lambda r: (lambda n: f"{n} 2\n{' '.join(str(r.randint(-5, 20)) for _ in range(n))}\n"
                   + "".join(f"{a} {b}\n" for a, b in (sorted((r.randint(1, n), r.randint(1, n))) for _ in range(2))))(
            r.randint(1, 8)))


def run_length(rng: random.Random, level: int) -> CodeTask:
    return CodeTask(
        ["run-length encoding", "strings", "grouping"],
        "Group equal adjacent characters and print each run as the character followed by its length.",
        "Read a string of lowercase letters. Print its run-length encoding: each maximal run of one letter as the "
        "letter followed by the run length (e.g. aaab -> a3b1).",
        "import itertools\ns = input().strip()\nprint(''.join(f'{c}{len(list(g))}' for c, g in itertools.groupby(s)))\n",
        lambda r: "".join(r.choice("aab") * r.randint(1, 3) for _ in range(r.randint(1, 5))) + "\n")


FAMILIES = (sum_multiples, max_window, reverse_words, count_class, fibonacci_mod, gcd_all, count_primes_upto,
            kth_order, palindrome, balanced_brackets, range_sums, run_length)
