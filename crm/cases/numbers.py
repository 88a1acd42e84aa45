"""Case (work order) numbers: digits with a Damm check digit.

Layout: YYMMDD + a 4-digit daily sequence + 1 check digit = 11 digits, e.g. 26112200017.
The Damm algorithm catches every single wrong digit and every swap of two adjacent digits,
the two mistakes people make most when reading or keying a number.
"""

from __future__ import annotations

from datetime import date

_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)

CASE_NUMBER_LENGTH = 11


def damm_digit(digits: str) -> str:
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][int(ch)]
    return str(interim)


def is_valid_case_number(number: str) -> bool:
    """True for a well-formed number whose check digit is right."""
    return (len(number) == CASE_NUMBER_LENGTH and number.isascii() and number.isdigit()
            and damm_digit(number) == "0")


def make_case_number(day: date, sequence: int) -> str:
    if not 1 <= sequence <= 9999:
        raise ValueError(f"daily case sequence out of range: {sequence}")
    body = f"{day:%y%m%d}{sequence:04d}"
    return body + damm_digit(body)
