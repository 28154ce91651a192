"""The SumUp sandbox's known accounts: API keys, their merchants and currencies."""

SANDBOX_ACCOUNTS: dict[str, str] = {
    "sup_sk_sandbox_coop": "MCOOP0001",
    "sup_sk_sandbox_farm": "MFARM0001",
    "sup_sk_sandbox_cafe": "MCAFE0001",
}

SANDBOX_MERCHANT_NAMES: dict[str, str] = {
    "MCOOP0001": "Rose Ash Cooperative",
    "MFARM0001": "Rose Ash Farm",
    "MCAFE0001": "Rose Ash Cafe",
}

# Every sandbox merchant is a UK business: a checkout in any other currency is refused.
SANDBOX_MERCHANT_CURRENCIES: dict[str, str] = {
    merchant_code: "GBP" for merchant_code in SANDBOX_ACCOUNTS.values()
}
