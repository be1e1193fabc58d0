"""Clients for the WMS side: the possync WMS protocol, its sandbox server, and product adapters.

It imports only ``agent.domain`` from the project.
"""
