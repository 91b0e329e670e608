"""The trigger engine: limit and sniper orders resting against the venues' market data (`oee triggers`)."""
