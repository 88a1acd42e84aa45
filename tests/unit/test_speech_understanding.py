import pytest

from speech.understanding import Understanding, understand


@pytest.mark.parametrize(
    ("text", "lang", "grammar", "expected"),
    [
        ("转人工", "cmn", "menu", Understanding("转人工", intent="agent")),
        ("查进度 再见", "cmn", "status_menu", Understanding("查进度 再见", intent="end")),
        ("맞 아요", "ko", "yesno", Understanding("맞 아요", yes=True)),
        ("no", "en", "yes_no", Understanding("no", yes=False)),
        ("double five one", "en", "digits", Understanding("double five one", digits="551")),
        ("非常满意", "cmn", "rating", Understanding("非常满意", rating=5)),
        ("English", "en", "language", Understanding("English", language="en")),
    ],
)
def test_understand_by_grammar(text: str, lang: str, grammar: str,
                               expected: Understanding) -> None:
    assert understand(text, lang, grammar) == expected


def test_unknown_grammar_is_an_error() -> None:
    with pytest.raises(KeyError):
        understand("x", "en", "weather")
