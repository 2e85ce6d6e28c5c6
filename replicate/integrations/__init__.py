"""One-line integrations with training frameworks, built on the public API only."""
