"""Speech for the hotline IVR: vosk recognition, grammars, prompts, TTS, spoken numbers.

Nothing here does I/O at import. The composition root builds a ``speech.stack.SpeechStack``.
"""
