"""Helpers below the models: collectives across processes, devices, checkpoint and run-folder files."""
