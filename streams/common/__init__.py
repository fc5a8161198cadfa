"""The ground floor every room reads: the config handed down by the entry point, metrics, calendar periods,
which partition judges a series, the name and terminal-safety rules."""
