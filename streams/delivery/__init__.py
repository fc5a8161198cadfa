"""Notifications out: the outbox delivered to every receiver's targets with retries, and Slack digests."""
