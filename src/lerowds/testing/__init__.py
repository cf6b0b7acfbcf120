"""Test support shipped with lerowds: self-identifying frames and a small LeRobot v3 writer."""
