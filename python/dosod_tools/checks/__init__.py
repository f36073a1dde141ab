"""Hand-run checks of exports, tokenizers and encoders against their references (dev venv)."""
