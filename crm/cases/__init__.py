"""Cases (work orders): numbers, the stage workflow, who may see which case, and what the IVR may
ask about a case."""
