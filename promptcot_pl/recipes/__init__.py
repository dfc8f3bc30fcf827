"""Outer loops: one module per stage (`run(ctx) -> metrics`) and the pipeline that runs them in order."""
