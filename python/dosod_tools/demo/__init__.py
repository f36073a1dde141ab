"""The demo model: emoji classes, synthetic emoji scenes and the DOSOD-N training run."""
