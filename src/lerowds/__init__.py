"""lerowds: LeRobot v3 datasets as per-episode WebDataset shards, streamed fast."""
