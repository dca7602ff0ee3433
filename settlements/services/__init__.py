"""Settlement services by topic: ``settle`` (the daily run, set-based in chunks of
merchants) and ``payouts`` (sending them through the payout gateway, reconciling)."""
