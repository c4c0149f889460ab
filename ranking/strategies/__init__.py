"""Importing this package registers every strategy in ranking.STRATEGIES."""

from ranking.strategies import baseline  # noqa: F401
