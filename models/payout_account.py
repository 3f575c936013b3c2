"""Where a vendor's payouts go: a Stripe Connect account, or bank details for the operator's
manual payouts (docs/payments.md, "Payout account"). Pure, no I/O.

Only what a payout needs is kept: for Stripe the connected account id; for a bank the holder's
name and either an IBAN or a local account number with its bank code (sort code, ABA routing
number, IFSC...) and country. The bank details are sealed at rest (services/payouts.py) and
shown masked to everyone but an admin paying them: the holder, the country, the bank code and
the account's last four characters (``hint``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from models.errors import BadRequest

STRIPE: Literal["stripe_connect"] = "stripe_connect"
BANK: Literal["bank"] = "bank"

_ACCT = re.compile(r"acct_[A-Za-z0-9]{4,64}")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_ACCOUNT_NUMBER = re.compile(r"[0-9]{4,20}")
_BANK_CODE = re.compile(r"[A-Z0-9]{3,15}")
_COUNTRY = re.compile(r"[A-Z]{2}")


def iban_valid(iban: str) -> bool:
    """ISO 13616's check: the country and check digits moved to the end, letters as 10..35,
    the number mod 97 is 1."""
    if not _IBAN.fullmatch(iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _compact(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{name}: a string")
    return re.sub(r"[\s-]", "", value).upper()


@dataclass(frozen=True, slots=True)
class BankDetails:
    """Bank details for a manual payout: an IBAN, or a local account number, bank code and
    country (the two forms are exclusive)."""

    holder_name: str
    country: str
    iban: str | None = None
    account_number: str | None = None
    bank_code: str | None = None

    @property
    def account(self) -> str:
        return self.iban or self.account_number or ""

    def hint(self) -> str:
        """The masked form a payout record and the vendor see: ``DE ••••3000``."""
        return f"{self.country} ••••{self.account[-4:]}"

    def masked(self) -> dict[str, Any]:
        return {"holder_name": self.holder_name, "country": self.country,
                "bank_code": self.bank_code, "account_last4": self.account[-4:],
                "form": "iban" if self.iban else "account_number"}  # fmt: skip

    def full(self) -> dict[str, Any]:
        return {"holder_name": self.holder_name, "country": self.country, "iban": self.iban,
                "account_number": self.account_number, "bank_code": self.bank_code}  # fmt: skip

    @classmethod
    def from_full(cls, data: dict[str, Any]) -> BankDetails:
        return cls(str(data["holder_name"]), str(data["country"]), data.get("iban"),
                   data.get("account_number"), data.get("bank_code"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class PayoutAccount:
    """A parsed ``PUT /api/v1/vendor/payout-account`` body: exactly one destination."""

    kind: Literal["stripe_connect", "bank"]
    stripe_account: str | None = None
    bank: BankDetails | None = None


def parse(body: dict[str, Any]) -> PayoutAccount:
    """The payout account a body names, or ``bad_request`` saying what is wrong (nothing is
    stored before this passes)."""
    kind = body.get("kind")
    if kind == STRIPE:
        extra = set(body) - {"kind", "account_id"}
        if extra:
            raise BadRequest(f"a stripe_connect account takes only account_id, not {sorted(extra)}")
        account = body.get("account_id")
        if not isinstance(account, str) or not _ACCT.fullmatch(account):
            raise BadRequest("account_id: a Stripe connected account id, acct_...")
        return PayoutAccount(STRIPE, stripe_account=account)
    if kind == BANK:
        return PayoutAccount(BANK, bank=_bank(body))
    raise BadRequest("kind: stripe_connect or bank")


def _bank(body: dict[str, Any]) -> BankDetails:
    allowed = {"kind", "holder_name", "iban", "account_number", "bank_code", "country"}
    extra = set(body) - allowed
    if extra:
        raise BadRequest(f"unknown fields {sorted(extra)}: a bank account takes {sorted(allowed)}")
    holder = body.get("holder_name")
    if not isinstance(holder, str) or not 1 <= len(holder.strip()) <= 100:
        raise BadRequest("holder_name: 1 to 100 characters")
    if ("iban" in body) == ("account_number" in body):
        raise BadRequest("give either iban, or account_number with bank_code and country")
    if "iban" in body:
        iban = _compact(body["iban"], "iban")
        if not iban_valid(iban):
            raise BadRequest("iban: not a valid IBAN (its check digits do not match)")
        if "country" in body and _compact(body["country"], "country") != iban[:2]:
            raise BadRequest("country: an IBAN names its own country")
        code = _compact(body["bank_code"], "bank_code") if "bank_code" in body else None
        if code is not None and not _BANK_CODE.fullmatch(code):
            raise BadRequest("bank_code: 3 to 15 letters or digits (BIC, sort code...)")
        return BankDetails(holder.strip(), iban[:2], iban=iban, bank_code=code)
    number = _compact(body["account_number"], "account_number")
    if not _ACCOUNT_NUMBER.fullmatch(number):
        raise BadRequest("account_number: 4 to 20 digits")
    code = _compact(body.get("bank_code"), "bank_code")
    if not _BANK_CODE.fullmatch(code):
        raise BadRequest("bank_code: 3 to 15 letters or digits (routing number, IFSC...)")
    country = _compact(body.get("country"), "country")
    if not _COUNTRY.fullmatch(country):
        raise BadRequest("country: an ISO 3166 alpha-2 code")
    return BankDetails(holder.strip(), country, account_number=number, bank_code=code)


def stripe_masked(account: str) -> dict[str, Any]:
    """A connected account id is no secret at Stripe, but shown short all the same."""
    return {"account_id": f"acct_…{account[-4:]}"}
