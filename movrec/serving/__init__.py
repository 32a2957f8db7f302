"""Serving a trained run: safe checkpoints, predictions, recommendations, the CLI."""
