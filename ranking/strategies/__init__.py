"""Importing this package registers every strategy in ranking.STRATEGIES."""

from . import baseline, dpp, mmr, pm2, seats, xquad  # noqa: F401
