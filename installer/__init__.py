"""Packaging and deployment: the PyInstaller build, service registration and unattended install.

The build command and service registration arrive with the packaging work (issue 8); this package
is declared now so the project layout and imports are stable.
"""
