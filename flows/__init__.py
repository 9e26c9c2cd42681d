"""Jobs: one module or package per `warmstart` subcommand, each also `python -m flows.<name>`.
Imports serve, interests, train and index; nothing imports flows (docs/ARCHITECTURE.md)."""
