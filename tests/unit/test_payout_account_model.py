"""The payout account's rules (models/payout_account.py): what a body may name, the IBAN check,
and the masked forms."""

from __future__ import annotations

from typing import Any

import pytest

from models import payout_account as pa
from models.errors import BadRequest


def test_iban_check_digits() -> None:
    assert pa.iban_valid("DE89370400440532013000")
    assert pa.iban_valid("GB82WEST12345698765432")
    assert not pa.iban_valid("DE88370400440532013000")  # one check digit off
    assert not pa.iban_valid("GB82WEST1234569876543Z")  # a typo in the account
    assert not pa.iban_valid("DE89")


def test_bank_by_iban_is_compacted_masked_and_keeps_only_what_a_payout_needs() -> None:
    got = pa.parse(
        {"kind": "bank", "holder_name": " A Baker ", "iban": "de89 3704-0044 0532 0130 00"}
    )
    assert got.kind == "bank" and got.bank is not None and got.stripe_account is None
    assert got.bank.full() == {"holder_name": "A Baker", "country": "DE",
                               "iban": "DE89370400440532013000", "account_number": None,
                               "bank_code": None}  # fmt: skip
    assert got.bank.hint() == "DE ••••3000"
    assert got.bank.masked()["account_last4"] == "3000"
    assert "0532" not in str(got.bank.masked())
    assert pa.BankDetails.from_full(got.bank.full()) == got.bank


def test_bank_by_local_account_and_stripe() -> None:
    local = pa.parse({"kind": "bank", "holder_name": "B", "account_number": "000123456789",
                      "bank_code": "hdfc0001234", "country": "in"})  # fmt: skip
    assert local.bank is not None and local.bank.bank_code == "HDFC0001234"
    assert local.bank.hint() == "IN ••••6789" and local.bank.masked()["form"] == "account_number"
    stripe = pa.parse({"kind": "stripe_connect", "account_id": "acct_1Abc234"})
    assert stripe.stripe_account == "acct_1Abc234" and stripe.bank is None
    assert pa.stripe_masked("acct_1Abc234") == {"account_id": "acct_…c234"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"kind": "wire"},
        {"kind": "stripe_connect"},
        {"kind": "stripe_connect", "account_id": "ba_123456"},
        {"kind": "stripe_connect", "account_id": "acct_12345", "holder_name": "x"},
        {"kind": "bank", "iban": "DE89370400440532013000"},  # no holder
        {"kind": "bank", "holder_name": "x" * 101, "iban": "DE89370400440532013000"},
        {"kind": "bank", "holder_name": "A"},  # neither form
        {"kind": "bank", "holder_name": "A", "iban": "DE89370400440532013000",
         "account_number": "1234", "bank_code": "ABC", "country": "DE"},  # both forms
        {"kind": "bank", "holder_name": "A", "iban": "DE89370400440532013000", "country": "FR"},
        {"kind": "bank", "holder_name": "A", "iban": 12},
        {"kind": "bank", "holder_name": "A", "account_number": "12a4", "bank_code": "ABC",
         "country": "US"},
        {"kind": "bank", "holder_name": "A", "account_number": "1234", "country": "US"},
        {"kind": "bank", "holder_name": "A", "account_number": "1234", "bank_code": "ABC",
         "country": "USA"},
        {"kind": "bank", "holder_name": "A", "iban": "DE89370400440532013000", "swift": "x"},
    ],
)  # fmt: skip
def test_bad_bodies_are_bad_requests(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        pa.parse(body)
