"""Language pack data files (<lang>.toml), loaded by speech.prompts."""
