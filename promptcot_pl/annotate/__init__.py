"""Cold-start annotation (SPEC §3; RELEASE_FORMATS §2): annotator answers parsed into concepts, level, rationale."""
