"""The SFT regime (SPEC §6): teacher traces for prompts, their filters, and the student's data."""
