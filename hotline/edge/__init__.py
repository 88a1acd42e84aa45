"""The cluster's SIP edge (Kamailio's dispatcher) and the media nodes behind it.

settings.py: the ``[edge]`` section; config.py: kamailio.cfg and the dispatcher list from
templates/; kamailio.py: the edge's process; nodes.py: each media node's settings and
process; cluster.py: the edge and its nodes up, down and described (``hotline edge``).
Nothing happens at import.
"""
