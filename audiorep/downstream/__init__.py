"""Frozen-embedding export, the HEAR API, probes, tasks, metrics and the leaderboard."""
