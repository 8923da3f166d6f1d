"""Serving the app on a socket: a connection cap, timeouts for idle, slow and stalled clients,
and malformed requests answered and logged briefly (:mod:`registry.server.connections`)."""
