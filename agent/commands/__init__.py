"""One module per ``possync`` command; each has ``register(subparsers)``. ``agent.cli`` lists them."""
