"""Shared pieces of every agent: networks, the jitted trainer, the replay buffer and config helpers."""
