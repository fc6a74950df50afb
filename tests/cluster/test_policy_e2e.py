"""The operator's policy on the local control plane: what a resource may ask its Jobs to run.

At `kubectl apply`, the chart's ValidatingAdmissionPolicy (rendered by helm, installed by the admin) refuses
an image override, a ServiceAccount or a migration image outside the allowed values; the operator refuses
the same on its own (no Job, a PolicyDenied condition and Event naming the value). Pod Security: every Pod
shape the operator creates, and the operator's own, is admitted in a namespace enforcing `restricted`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from chart_support import CHART, render_chart
from operator_support import ChartOperator, Obj, condition, events, in_namespace, resource, wait_status

from pgwarden.api.backup import DatabaseBackup
from pgwarden.api.migration import DatabaseMigration
from pgwarden.api.restore import DatabaseRestore
from pgwarden.api.task import RestoreSource
from pgwarden.operator import command as operator_cmd
from pgwarden.operator import jobs
from pgwarden.operator.policy import REASON, Policy, image_allowed

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.cluster

OWN_IMAGE = "registry.example/pgwarden/pgwarden:1.0.0"
ALLOWED_JOB_IMAGE = "registry.example/team/pgwarden"
ALLOWED_MIGRATION_IMAGE = "registry.example/shop-migrations"
DIGEST = "sha256:" + "ab" * 32
DATABASE = {"secretRef": {"name": "shop-db"}}
STORAGE = {"volume": {"claimName": "backups"}}


def backup(name: str, **job_template: str) -> Obj:
    spec: Obj = {"database": DATABASE, "storage": STORAGE}
    if job_template:
        spec["jobTemplate"] = dict(job_template)
    return resource("DatabaseBackup", name, spec)


def scheduled(manifest: Obj) -> Obj:
    manifest["spec"]["schedule"] = "*/5 * * * *"
    return manifest


def migration_from_image(name: str, image: str) -> Obj:
    return resource(
        "DatabaseMigration",
        name,
        {"database": DATABASE, "migrations": {"image": {"image": image, "path": "/sql"}}},
    )


def apply(kube: LocalCluster, namespace: str, manifest: Obj, *, dry_run: bool = False) -> tuple[bool, str]:
    """(accepted, kubectl's output) of applying one manifest as the admin."""
    args = ["apply", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    document = json.dumps(in_namespace(namespace, manifest)[0])
    result = kube.kubectl(*args, input=document, check=False)
    return result.returncode == 0, result.stdout + result.stderr


@dataclasses.dataclass
class Admission:
    """The chart's ValidatingAdmissionPolicy and binding, installed for one namespace."""

    kube: LocalCluster
    namespace: str

    def refuses(self, manifest: Obj, *names: str) -> str:
        accepted, output = apply(self.kube, self.namespace, manifest)
        assert not accepted, f"applied although the policy refuses it:\n{output}"
        assert "ValidatingAdmissionPolicy" in output and "denied" in output, output
        for name in names:
            assert name in output, (name, output)
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        gone = self.kube.kubectl("get", kind, name, "-n", self.namespace, check=False)
        assert gone.returncode != 0, f"{kind}/{name} exists although refused"
        return output

    def accepts(self, manifest: Obj) -> None:
        accepted, output = apply(self.kube, self.namespace, manifest, dry_run=True)
        assert accepted, output


@pytest.fixture
def policy_values() -> tuple[str, ...]:
    """The chart's `policy` values of a test (`--set` settings); parametrize it to set some."""
    return ()


@pytest.fixture
def admission(
    policy_values: tuple[str, ...], kube: LocalCluster, namespace: str, crds: None, helm: Path
) -> Iterator[Admission]:
    """The chart rendered with the test's `policy` values, its admission objects applied."""
    manifests = render_chart(
        helm,
        "rbac.clusterWide=false",
        f"watchNamespaces={{{namespace}}}",
        f"image.repository={OWN_IMAGE.rsplit(':', 1)[0]}",
        f"image.tag={OWN_IMAGE.rsplit(':', 1)[1]}",
        *policy_values,
        release=f"pgw-{secrets.token_hex(3)}",
        namespace=namespace,
    )
    policy = [m for m in manifests if m["kind"].startswith("ValidatingAdmissionPolicy")]
    assert [m["kind"] for m in policy] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    kube.apply(*policy)
    try:
        # The API server picks a new policy up within a second or so; until then applies pass unchecked.
        probe = backup("probe", image="evil.example/probe:1")
        kube.wait_for(
            "the ValidatingAdmissionPolicy to be enforced",
            lambda: not apply(kube, namespace, probe, dry_run=True)[0],
            timeout=60,
        )
        yield Admission(kube, namespace)
    finally:
        for manifest in policy:
            kube.kubectl(
                "delete", manifest["kind"], manifest["metadata"]["name"], "--wait=false", check=False
            )


def test_by_default_kubectl_apply_refuses_any_image_override_service_account_and_migration_image(
    admission: Admission,
) -> None:
    admission.refuses(
        backup("override", image="registry.example/team/pgwarden:2"),
        "spec.jobTemplate.image",
        "policy.allowImageOverride",
    )
    admission.refuses(
        backup("account", serviceAccountName="default"),
        "spec.jobTemplate.serviceAccountName",
        "policy.serviceAccounts",
    )
    admission.refuses(
        migration_from_image("from-image", f"{ALLOWED_MIGRATION_IMAGE}:7"), "policy.migrationImages"
    )
    # What asks for nothing more is let through, and so is the Jobs' own image.
    admission.accepts(backup("plain"))
    admission.accepts(backup("own-image", image=OWN_IMAGE))


@pytest.mark.parametrize(
    "policy_values",
    [
        (
            "policy.allowImageOverride=true",
            f"policy.jobImages={{{ALLOWED_JOB_IMAGE}}}",
        )
    ],
    ids=["policy"],
)
def test_kubectl_apply_refuses_an_image_override_outside_the_allowlist(admission: Admission) -> None:
    output = admission.refuses(
        backup("miner", image="evil.example/miner:1"), "evil.example/miner:1", "policy.jobImages"
    )
    assert ALLOWED_JOB_IMAGE in output, "the message names what is allowed"
    admission.refuses(backup("lookalike", image=f"{ALLOWED_JOB_IMAGE}-evil:2"), "policy.jobImages")
    admission.accepts(backup("listed", image=f"{ALLOWED_JOB_IMAGE}:2"))
    admission.accepts(backup("listed-digest", image=f"{ALLOWED_JOB_IMAGE}@{DIGEST}"))


@pytest.mark.parametrize("policy_values", [("policy.serviceAccounts={backup-writer}",)], ids=["policy"])
def test_kubectl_apply_refuses_a_service_account_outside_the_allowed_set(admission: Admission) -> None:
    output = admission.refuses(
        backup("admin", serviceAccountName="cloud-admin"), "cloud-admin", "policy.serviceAccounts"
    )
    assert "backup-writer" in output
    admission.accepts(backup("writer", serviceAccountName="backup-writer"))


@pytest.mark.parametrize(
    "policy_values", [(f"policy.migrationImages={{{ALLOWED_MIGRATION_IMAGE}@{DIGEST}}}",)], ids=["policy"]
)
def test_kubectl_apply_refuses_a_migration_image_outside_the_allowlist(admission: Admission) -> None:
    admission.refuses(migration_from_image("other", "evil.example/migrations:1"), "policy.migrationImages")
    # Pinned to a digest: the same repository under a tag, or another digest, is not that image.
    admission.refuses(
        migration_from_image("tagged", f"{ALLOWED_MIGRATION_IMAGE}:7"), "policy.migrationImages"
    )
    admission.refuses(
        migration_from_image("moved", f"{ALLOWED_MIGRATION_IMAGE}@sha256:{'cd' * 32}"),
        "policy.migrationImages",
    )
    admission.accepts(migration_from_image("pinned", f"{ALLOWED_MIGRATION_IMAGE}@{DIGEST}"))


EQUIVALENCE_ENTRIES = (
    "registry.example/team/app",
    "registry.example/mirror/*",
    f"registry.example/pinned@{DIGEST}",
)


@pytest.mark.parametrize(
    "policy_values",
    [("policy.allowImageOverride=true", f"policy.jobImages={{{','.join(EQUIVALENCE_ENTRIES)}}}")],
    ids=["policy"],
)
def test_the_api_server_and_the_operator_decide_alike_on_every_image_shape(admission: Admission) -> None:
    """The CEL of the admission policy and policy.image_allowed, side by side on the same images."""
    images = [
        "registry.example/team/app",
        "registry.example/team/app:2",
        f"registry.example/team/app@{DIGEST}",
        "registry.example/team/app-evil:2",
        "registry.example/team/app/sub:2",
        "registry.example/mirror/x:1",
        "registry.example/mirror/deep/x@" + DIGEST,
        "registry.example/mirrored/x:1",
        "registry.example:5000/mirror/x:1",
        f"registry.example/pinned@{DIGEST}",
        f"registry.example/pinned:7@{DIGEST}",
        "registry.example/pinned:7",
        "registry.example/pinned@sha256:" + "cd" * 32,
        "team/app:1",
    ]
    disagree = []
    for number, image in enumerate(images):
        admitted, output = apply(
            admission.kube, admission.namespace, backup(f"b{number}", image=image), dry_run=True
        )
        if admitted != image_allowed(image, EQUIVALENCE_ENTRIES):
            disagree.append((image, admitted, output))
    assert not disagree, disagree


# -- the operator's own check, where no admission policy is installed --------------------------------


def unbind_admission(kube: LocalCluster, namespace: str) -> None:
    """Delete the ValidatingAdmissionPolicyBindings of pgwarden's policies that cover `namespace`."""
    listed = kube.kubectl("get", "validatingadmissionpolicybindings", "-o", "json").stdout
    for binding in json.loads(listed)["items"]:
        selector = ((binding["spec"].get("matchResources") or {}).get("namespaceSelector")) or {}
        names = [value for term in selector.get("matchExpressions", []) for value in term.get("values", [])]
        if binding["spec"]["policyName"].endswith("-job-policy") and namespace in names:
            kube.kubectl(
                "delete", "validatingadmissionpolicybinding", binding["metadata"]["name"], check=False
            )


def denied(status: Obj) -> bool:
    ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    return bool(ready) and ready[0]["reason"] == REASON


def denial_events(kube: LocalCluster, namespace: str, name: str) -> Callable[[], list[Obj]]:
    return lambda: [e for e in events(kube, namespace, name) if e["reason"] == REASON]


def test_the_operator_builds_no_job_for_a_resource_outside_its_policy_and_says_which_value_to_change(
    kube: LocalCluster, operator: ChartOperator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator's own check, not the API server's: a chart-installed admission binding for this namespace
    # (when the harness installs the chart) is taken away first, so the resources get through.
    unbind_admission(kube, operator.namespace)
    # The operator under a policy with allowlists (its flags' environment variables, where it runs as a
    # process here), restarted to read them. Under the defaults (no allowlists) each message names the same
    # values, so the checks below hold either way.
    operator.stop()
    monkeypatch.setenv("PGWARDEN_ALLOW_JOB_IMAGE_OVERRIDE", "true")
    monkeypatch.setenv("PGWARDEN_ALLOWED_JOB_IMAGES", ALLOWED_JOB_IMAGE)
    monkeypatch.setenv("PGWARDEN_ALLOWED_SERVICE_ACCOUNTS", "backup-writer")
    monkeypatch.setenv("PGWARDEN_ALLOWED_MIGRATION_IMAGES", ALLOWED_MIGRATION_IMAGE)
    operator.start()
    asked = {
        ("dbbackup", "miner"): (backup("miner", image="evil.example/miner:1"), "policy.jobImages"),
        ("dbbackup", "admin"): (
            scheduled(backup("admin", serviceAccountName="cloud-admin")),
            "policy.serviceAccounts",
        ),
        ("dbmig", "from-image"): (
            migration_from_image("from-image", "evil.example/migrations:1"),
            "policy.migrationImages",
        ),
    }
    kube.apply(*in_namespace(operator.namespace, *(manifest for manifest, _ in asked.values())))
    for (kind, name), (_, setting) in asked.items():
        status = wait_status(kube, operator, kind, name, denied)
        ready = condition(status, "Ready")
        assert ready["status"] == "False" and setting in ready["message"], status
        kube.wait_for(
            f"the {REASON} Event of {name}", denial_events(kube, operator.namespace, name), timeout=30
        )
    assert kube.get_all("jobs", operator.namespace) == []
    assert kube.get_all("cronjobs", operator.namespace) == []


# -- Pod Security: restricted, enforced by the API server ---------------------------------------------


def _restricted_namespace(kube: LocalCluster, namespace: str) -> None:
    kube.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )


def _dry_run_pod(kube: LocalCluster, namespace: str, name: str, template: Obj) -> tuple[bool, str]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **(template.get("metadata") or {})},
        "spec": template["spec"],
    }
    result = kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    return result.returncode == 0, result.stdout + result.stderr


def _pod_templates(namespace: str) -> dict[str, Obj]:
    """Every Pod shape the operator creates: each kind, each migrations source, a CA, S3 credentials."""
    # The image source of migrations is built only where the policy allows it.
    allowed = Policy(migration_images=("registry.example/shop-migrations",))
    settings = jobs.JobSettings(image="pgwarden:e2e", policy=allowed)
    meta = {"namespace": namespace, "uid": "0f0e0d0c-1111-2222-3333-444455556666", "generation": 1}
    database = {"secretRef": {"name": "shop-db"}, "sslMode": "verify-full", "caSecretRef": {"name": "db-ca"}}
    s3 = {"s3": {"bucket": "backups", "prefix": "p/", "credentialsSecretRef": {"name": "s3-credentials"}}}
    sources: dict[str, Obj] = {
        "configmap": {"configMapRefs": [{"name": "a"}, {"name": "b"}]},
        "image": {"image": {"image": "registry.example/shop-migrations:7", "path": "/sql"}},
        "inline": {"inline": [{"name": "0001_init.sql", "sql": "CREATE TABLE t (id int);"}]},
    }
    templates: dict[str, Obj] = {}
    for source, migrations in sources.items():
        body = {
            "metadata": dict(meta, name=f"mig-{source}"),
            "spec": {"database": database, "migrations": migrations, "backupBefore": {"storage": s3}},
        }
        templates[f"migration-{source}"] = jobs.migration_job(
            DatabaseMigration.model_validate(body), settings
        )
    one_time = DatabaseBackup.model_validate(
        {"metadata": dict(meta, name="once"), "spec": {"database": database, "storage": s3}}
    )
    templates["backup"] = jobs.backup_job(one_time, settings)
    scheduled = DatabaseBackup.model_validate(
        {
            "metadata": dict(meta, name="nightly"),
            "spec": {"database": database, "storage": STORAGE, "schedule": "0 2 * * *"},
        }
    )
    cronjob = jobs.backup_cronjob(scheduled, settings)
    restore = DatabaseRestore.model_validate(
        {
            "metadata": dict(meta, name="restore"),
            "spec": {"database": database, "source": {"location": "x", "storage": s3}},
        }
    )
    source_of = RestoreSource(storage=restore.spec.source.storage, location="p/x")
    templates["restore"] = jobs.restore_job(restore, source_of, settings)
    pods = {name: job["spec"]["template"] for name, job in templates.items()}
    pods["backup-scheduled"] = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    return pods


def test_every_pod_the_operator_creates_and_its_own_are_admitted_under_restricted_pod_security(
    kube: LocalCluster, namespace: str, helm: Path
) -> None:
    _restricted_namespace(kube, namespace)
    # The namespace really enforces: a Pod without the restricted settings is refused.
    plain = {"spec": {"containers": [{"name": "main", "image": "pgwarden:e2e"}]}}
    refused, output = _dry_run_pod(kube, namespace, "plain", plain)
    assert not refused and "violates PodSecurity" in output, output

    for name, template in _pod_templates(namespace).items():
        admitted, output = _dry_run_pod(kube, namespace, name, template)
        assert admitted, f"the {name} Pod is refused under restricted:\n{output}"

    (deployment,) = [m for m in render_chart(helm, namespace=namespace) if m["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    template["spec"]["serviceAccountName"] = "default"  # the chart's own is not created here
    admitted, output = _dry_run_pod(kube, namespace, "operator", template)
    assert admitted, f"the operator's Pod is refused under restricted:\n{output}"


# -- the chart: values to flags, the Jobs' ServiceAccount --------------------------------------------


def test_the_chart_policy_values_become_the_operators_policy(helm: Path) -> None:
    manifests = render_chart(
        helm,
        "rbac.clusterWide=false",
        "watchNamespaces={shop}",
        "policy.allowImageOverride=true",
        f"policy.jobImages={{{ALLOWED_JOB_IMAGE},registry.example/mirror/*}}",
        f"policy.migrationImages={{{ALLOWED_MIGRATION_IMAGE}@{DIGEST}}}",
        "policy.serviceAccounts={backup-writer}",
        "policy.jobServiceAccount.create=true",
        release="pgw",
    )
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    parser = argparse.ArgumentParser()
    operator_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(container["args"])
    assert operator_cmd.job_policy(args) == Policy(
        allow_image_override=True,
        job_images=(ALLOWED_JOB_IMAGE, "registry.example/mirror/*"),
        migration_images=(f"{ALLOWED_MIGRATION_IMAGE}@{DIGEST}",),
        service_accounts=("backup-writer",),
    )
    (account,) = [
        m for m in manifests if m["kind"] == "ServiceAccount" and m["metadata"]["namespace"] == "shop"
    ]
    assert args.job_service_account == account["metadata"]["name"]
    defaults = next(m for m in render_chart(helm) if m["kind"] == "Deployment")
    args = parser.parse_args(defaults["spec"]["template"]["spec"]["containers"][0]["args"])
    assert operator_cmd.job_policy(args) == Policy() and args.job_service_account is None


def test_the_jobs_service_account_has_no_token_and_may_do_nothing(
    kube: LocalCluster, namespace: str, helm: Path
) -> None:
    """The chart's Job ServiceAccount, applied with the chart's RBAC, asked of the API server's authorizer."""
    manifests = render_chart(
        helm,
        "rbac.clusterWide=false",
        f"watchNamespaces={{{namespace}}}",
        "rbac.aggregateToDefaultRoles=false",
        "policy.jobServiceAccount.create=true",
        release="pgw",
        namespace=namespace,
    )
    accounts = [m for m in manifests if m["kind"] == "ServiceAccount"]
    (job_account,) = [a for a in accounts if a["metadata"]["labels"]["app.kubernetes.io/component"] == "job"]
    assert job_account["automountServiceAccountToken"] is False
    name = job_account["metadata"]["name"]
    bound = [
        subject["name"]
        for m in manifests
        if m["kind"] in ("RoleBinding", "ClusterRoleBinding")
        for subject in m["subjects"]
    ]
    assert name not in bound, "the Jobs' ServiceAccount is bound to no Role"
    kube.apply(*[m for m in manifests if m["kind"] in ("ServiceAccount", "Role", "RoleBinding")])
    user = f"system:serviceaccount:{namespace}:{name}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    for verb, resource_name in (
        ("get", "secrets"),
        ("list", "secrets"),
        ("create", "pods"),
        ("create", "jobs.batch"),
        ("list", "databasemigrations.pgwarden.io"),
        ("get", "configmaps"),
    ):
        plural, _, group = resource_name.partition(".")
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": groups,
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": verb,
                    "group": group,
                    "resource": plural,
                },
            },
        }
        answer = json.loads(kube.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout)
        assert not answer["status"].get("allowed"), f"the Jobs' ServiceAccount may {verb} {resource_name}"
    # A Job Pod as that account, under restricted Pod Security, is admitted.
    _restricted_namespace(kube, namespace)
    template = _pod_templates(namespace)["backup"]
    template["spec"]["serviceAccountName"] = name
    admitted, output = _dry_run_pod(kube, namespace, "as-job-account", template)
    assert admitted, output


def test_the_network_policy_lets_the_operator_reach_the_api_server_only(
    kube: LocalCluster, namespace: str, helm: Path
) -> None:
    manifests = render_chart(
        helm,
        "networkPolicy.enabled=true",
        "networkPolicy.apiServer.cidrs={10.0.0.1/32,10.0.0.2/32}",
        namespace=namespace,
    )
    (policy,) = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    (egress,) = policy["spec"]["egress"]
    assert [peer["ipBlock"]["cidr"] for peer in egress["to"]] == ["10.0.0.1/32", "10.0.0.2/32"]
    assert {port["port"] for port in egress["ports"]} == {443, 6443}
    kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(policy))
    assert not [m for m in render_chart(helm, namespace=namespace) if m["kind"] == "NetworkPolicy"], (
        "off by default"
    )
    # `helm template` cannot look the API server up: it says which value to set.
    result = subprocess.run(
        [str(helm), "template", "pgwarden", str(CHART), "--set", "networkPolicy.enabled=true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "networkPolicy.apiServer.cidrs" in result.stderr
