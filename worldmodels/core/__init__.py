"""Plumbing every stage shares: user errors, the device, settings as CLI flags, worker executors."""
