"""How a stored dump was sealed: recorded in its manifest and reported, so a reader knows which identity it needs."""

from __future__ import annotations

from pydantic import Field

from pgwarden.api.base import ApiModel


class Sealing(ApiModel):
    """Client-side encryption of a stored dump: the method and the recipients' public keys (never a key
    that opens it)."""

    method: str = Field(default="age", description="age (https://age-encryption.org/v1), after compression.")
    recipients: list[str] = Field(
        default_factory=list,
        description="Public keys (age1…) the dump was sealed to; any one's identity opens it.",
    )
