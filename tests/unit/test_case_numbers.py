from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from crm.cases.numbers import is_valid_case_number, make_case_number

days = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
seqs = st.integers(min_value=1, max_value=9999)


@given(days, seqs)
def test_made_numbers_are_valid(day: date, seq: int) -> None:
    number = make_case_number(day, seq)
    assert len(number) == 11 and is_valid_case_number(number)


@given(days, seqs, st.integers(0, 10), st.integers(1, 9))
def test_every_single_digit_error_is_caught(day: date, seq: int, pos: int, delta: int) -> None:
    number = make_case_number(day, seq)
    wrong = number[:pos] + str((int(number[pos]) + delta) % 10) + number[pos + 1:]
    assert not is_valid_case_number(wrong)


@given(days, seqs, st.integers(0, 9))
def test_every_adjacent_swap_is_caught(day: date, seq: int, pos: int) -> None:
    number = make_case_number(day, seq)
    swapped = number[:pos] + number[pos + 1] + number[pos] + number[pos + 2:]
    assert swapped == number or not is_valid_case_number(swapped)


def test_malformed_numbers_are_rejected() -> None:
    for junk in ["", "123", "2611220017８", "2611220017a", "٢٦١١٢٢٠٠١٧٨", "261122001780"]:
        assert not is_valid_case_number(junk)
