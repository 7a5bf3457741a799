"""Fixtures that start real brokers / media drivers on 127.0.0.1 for the integration tests."""
