"""Request budgets: each run plans what its Spotify requests are spent on, and reports the backlog it leaves."""
