"""Run plumbing shared by every agent: run directories and logs, checkpoints, and the offline/online loop."""
