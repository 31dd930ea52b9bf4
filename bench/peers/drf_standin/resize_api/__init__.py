"""The resize API of the stand-in: create a task, check it (bench/peers/drf.py)."""
