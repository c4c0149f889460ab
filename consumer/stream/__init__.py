"""Kafka in -> parse -> micro-batch -> score -> commit; dead letters."""
