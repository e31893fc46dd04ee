"""The MarketPlaceManager (mirrors ``src/market``): MARKET_MAD actions and monitoring."""
