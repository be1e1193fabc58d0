"""Capture sources: each turns one kind of POS output into movements and a resume cursor.

It imports only ``agent.domain`` from the project.
"""
