"""Budgets: the ledger per judge partition (thresholds, forecasts), over-budget decisions for gateways,
and the model-mix (third-party share) watch."""
