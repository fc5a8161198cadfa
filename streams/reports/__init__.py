"""Daily and weekly spend reports: the pure core (periods due, parts, merge) and the worker's part/merge
flow across judge partitions."""
