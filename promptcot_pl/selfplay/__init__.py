"""Self-play (SPEC §5): rollouts with verifiable rewards, the pass-rate window and preference pairs."""
