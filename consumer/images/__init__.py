"""Untrusted URL -> pixels: safe download and decode. Knows nothing of Kafka or Redis."""
