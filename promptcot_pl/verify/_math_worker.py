"""Worker process for math equivalence (see `pool.py`): one JSON request per line → one JSON result per line.

math-verify (on sympy and an ANTLR LaTeX grammar) does the parsing and comparison. Its own timeouts use
`signal.alarm`; they are switched off here because the pool kills this whole process on timeout instead.
A prediction that does not parse is False, a reference that does not parse None (`verify/math.py`).
Its plain-expression parser only ever sees digits, operators and parentheses (math-verify's regex), so no
model text reaches `eval`; the LaTeX parser is a grammar, not Python.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys

_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[")  # an unescaped $, or \( or \[


def main() -> None:
    logging.disable(logging.WARNING)  # math-verify warns on every call that its own timeouts are off
    from math_verify import parse, verify
    from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig

    targets = [LatexExtractionConfig(), ExprExtractionConfig()]

    @functools.lru_cache(maxsize=4096)  # references repeat across rollouts and votes; parses are immutable
    def as_math(text: str):
        wrapped = text if _DELIMITED.search(text) else f"${text}$"
        return parse(wrapped, extraction_config=targets, parsing_timeout=None)

    def parsed(text: str):
        """math-verify's parse, or None when it found no expression (it then returns the bare string alone)."""
        try:
            result = as_math(text)
        except Exception:  # noqa: BLE001 - any parser failure is "no expression", never a crash
            return None
        return result if any(not isinstance(e, str) for e in result) else None

    def check(pred: str, ref: str) -> bool | None:
        gold = parsed(ref)
        if not gold:
            return None  # the reference side failed: undecidable
        guess = parsed(pred)
        if not guess:
            return False  # an unparsable prediction is a wrong answer, as in math-verify itself
        try:
            return bool(verify(gold, guess, timeout_seconds=None))
        except Exception:  # noqa: BLE001 - the checker itself failed: undecidable
            return None

    check("1", "1")  # warm the parsers before saying ready
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        out.write(json.dumps({"id": request["id"], "result": check(request["pred"], request["ref"])}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
