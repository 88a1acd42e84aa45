"""AudioSocket: the wire format, the TCP server, and one call's media session."""
