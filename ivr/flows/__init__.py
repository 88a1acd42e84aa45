"""The IVR's dialogues as explicit, pure state machines: the menu and the satisfaction survey."""
