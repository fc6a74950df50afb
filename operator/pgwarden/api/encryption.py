"""Client-side encryption with age: how a stored dump was sealed (recorded in its manifest and reported), and
where the resources find the keys (Secrets the operator never reads; the Job's pod gets one key of each)."""

from __future__ import annotations

from pydantic import Field

from pgwarden.api.base import ApiModel
from pgwarden.api.common import ObjectName

RECIPIENTS_KEY = "recipients"
IDENTITY_KEY = "identity"


class Sealing(ApiModel):
    """Client-side encryption of a stored dump: the method and the recipients' public keys (never a key
    that opens it)."""

    method: str = Field(default="age", description="age (https://age-encryption.org/v1), after compression.")
    recipients: list[str] = Field(
        default_factory=list,
        description="Public keys (age1…) the dump was sealed to; any one's identity opens it.",
    )


class RecipientsSecretRef(ApiModel):
    """The key of a Secret holding age public keys (age1…), one a line; `#` lines are comments."""

    name: ObjectName = Field(description="Name of the Secret, in the resource's namespace.")
    key: str = Field(default=RECIPIENTS_KEY, max_length=253, description="Key in the Secret.")


class IdentitySecretRef(ApiModel):
    """The key of a Secret holding an age identity file (AGE-SECRET-KEY-1… lines, as age-keygen writes it)."""

    name: ObjectName = Field(description="Name of the Secret, in the resource's namespace.")
    key: str = Field(default=IDENTITY_KEY, max_length=253, description="Key in the Secret.")


class BackupEncryption(ApiModel):
    """Seal every stored byte with age before it leaves the Job, so the storage only ever holds ciphertext."""

    recipients_secret_ref: RecipientsSecretRef = Field(
        description=(
            "Secret key with the recipients' public keys (age1…, one a line); any one's identity opens the "
            "backups. The operator never reads it; the Job's pod gets this one key."
        )
    )
    identity_secret_ref: IdentitySecretRef | None = Field(
        default=None,
        description=(
            "Secret key with an identity of one of the recipients, for what restores the backups here: "
            "verify.restore and restore drills (verify.schedule). Mounted as one file in their Jobs only."
        ),
    )


class RestoreEncryption(ApiModel):
    """The identity that opens a backup sealed with age."""

    identity_secret_ref: IdentitySecretRef = Field(
        description=(
            "Secret key with an age identity file (AGE-SECRET-KEY-1… lines) of one of the backup's "
            "recipients. Mounted as one file in the Job's pod; the operator never reads it."
        )
    )
