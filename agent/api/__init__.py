"""The agent's local HTTP API and status page (127.0.0.1 by default, token required)."""
