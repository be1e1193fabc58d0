"""The tray icon (``possync tray``): a separate process in the user's session that reads the local API."""
