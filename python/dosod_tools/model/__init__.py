"""DOSOD in PyTorch (arXiv 2412.14680), state-dict compatible with the official mmyolo/DOSOD
checkpoints; dev-time only. Every submodule but `config` imports torch."""
