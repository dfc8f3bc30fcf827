"""Verifiers for untrusted model output: math answer equivalence, a code sandbox, and rewards built on them."""
