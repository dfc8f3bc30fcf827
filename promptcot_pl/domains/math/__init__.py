"""The built-in math domain (a stand-in for the paper's AoPS seeds): problem families by topic —
`number_theory`, `algebra`, `combinatorics`, `probability`, `geometry` — each drawing parameters for a difficulty
level (0 = easiest), writing the designer's rationale that fixes every parameter and the question (so knowing z
makes x predictable), the problem, a sympy-computed answer (exact) and the solution steps (`item.MathItem`);
`corpus.build_math` deals them out into triples."""

from promptcot_pl.domains.math.corpus import FAMILIES, GENERAL_CONCEPTS, LEVELS, answer_text, build_math

__all__ = ["FAMILIES", "GENERAL_CONCEPTS", "LEVELS", "answer_text", "build_math"]
