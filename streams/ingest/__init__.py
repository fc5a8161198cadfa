"""Usage events in: decode, normalise, price, count into event-time windows (the pure core), and the hot
topic's batched consumer loop that runs it in the worker."""
