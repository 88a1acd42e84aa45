"""A benchmark prints its command line for the report; a database password never shows."""

from __future__ import annotations

from bench.load import shown_args


def test_a_database_urls_password_is_hidden_in_either_spelling() -> None:
    url = "postgresql+asyncpg://hotline_test:s3cret@127.0.0.1:5432/bench?ssl=disable"
    shown = shown_args(["--roles", "split", "--database-url", url, f"--database-url={url}",
                        "--steps=80"])
    assert "s3cret" not in " ".join(shown)
    assert shown[0:2] == ["--roles", "split"] and shown[-1] == "--steps=80"
    assert shown[3].startswith("postgresql+asyncpg://hotline_test:***@127.0.0.1:5432/bench")
    assert shown[4].startswith("--database-url=postgresql+asyncpg://hotline_test:***@")
