"""Storage by identity on the local cluster: MinIO trusting the cluster's ServiceAccount tokens.

kube-apiserver serves its service-account issuer discovery (`/.well-known/openid-configuration` and the JWKS
it names, on the bridge's address); a ClusterRoleBinding lets anonymous callers read it, as the Kubernetes
documentation describes for external relying parties. A MinIO on the bridge is configured with it as an
OpenID provider (MINIO_IDENTITY_OPENID_*) whose tokens must carry AUDIENCE, and a role policy; its role ARN
is the one MinIO derives from the client id. A Pod holding a token projected for that audience exchanges it
at MinIO's STS (AssumeRoleWithWebIdentity) for short-lived keys: no key lives in the namespace.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pgwarden_testing import s3server

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

REPO = Path(__file__).resolve().parents[2]
AUDIENCE = "pgwarden-minio"
DISCOVERY_BINDING = "pgwarden-tests-oidc-discovery"


def minio_role_arn(client_id: str) -> str:
    """The role ARN MinIO gives an OpenID provider with a role policy: a hash of its client id."""
    digest = hashlib.sha1(client_id.encode()).digest()  # MinIO's own derivation, not a security use
    return "arn:minio:iam:::role/" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


ROLE_ARN = minio_role_arn(AUDIENCE)


def identity_storage(s3: s3server.S3Server, bucket: str, prefix: str) -> dict[str, Any]:
    """An s3 storage whose credentials are the Job's ServiceAccount, exchanged at MinIO's STS."""
    return {
        "s3": {
            "bucket": bucket,
            "prefix": prefix,
            "endpoint": s3.endpoint,
            "region": s3server.REGION,
            "forcePathStyle": True,
            "credentials": {"webIdentity": {"roleArn": ROLE_ARN, "audience": AUDIENCE}},
        }
    }


def _allow_discovery(kube: LocalCluster) -> None:
    """Anonymous callers (MinIO) may read the issuer discovery document and its keys, nothing else."""
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": DISCOVERY_BINDING},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:service-account-issuer-discovery",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}
            ],
        }
    )


@pytest.fixture(scope="module")
def oidc_s3(kube: LocalCluster) -> Iterator[s3server.S3Server]:
    """A MinIO on the bridge trusting the cluster's ServiceAccount tokens for AUDIENCE (role policy
    readwrite). Its root keys are the test's own, to create buckets and look inside; no Pod gets them."""
    _allow_discovery(kube)
    host, port = kube.apiserver
    try:
        server = s3server.start(
            address=kube.pod_gateway,
            settings={
                "MINIO_IDENTITY_OPENID_CONFIG_URL": f"https://{host}:{port}/.well-known/openid-configuration",
                "MINIO_IDENTITY_OPENID_CLIENT_ID": AUDIENCE,
                "MINIO_IDENTITY_OPENID_ROLE_POLICY": "readwrite",
                "MINIO_IDENTITY_OPENID_DISPLAY_NAME": "pgwarden-local-cluster",
            },
            trusted_cas=(REPO / ".local" / "cluster" / "pki" / "ca.crt",),
        )
    except s3server.S3ServerUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
