"""Live state fed by call events: the agent desks and their screen pops, and the wallboard."""
