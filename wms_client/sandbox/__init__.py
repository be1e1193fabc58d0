"""The sandbox WMS: the reference implementation of the possync WMS protocol, for tests and demos."""
