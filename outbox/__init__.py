"""The durable SQLite outbox between POS capture and WMS delivery; the only owner of its file.

It imports only ``agent.domain`` from the project.
"""
