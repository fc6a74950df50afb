"""DatabaseMigrationSet and DatabaseBackupSet on the real node, the chart installed by helm (issue 21).

Six tenant databases on this machine's PostgreSQL, each a Secret labelled pgwarden.io/tenant-db=true; the
operator (namespaced Role, sets.selectSecrets=true) chooses them by that label, makes one child per tenant
and runs their Jobs on the node. The rollout is asserted from the Jobs' own start and end times.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from operator_support import (
    ChartOperator,
    Obj,
    assert_never_shown,
    chart_operator,
    condition,
    events,
    in_namespace,
    resource,
    s3_secret,
    s3_storage,
    secret,
    status_of,
    wait_status,
)
from pgwarden_testing import s3server
from pgwarden_testing.localpg import LocalPostgres
from prometheus_client.parser import text_string_to_metric_families

from pgwarden.api.common import APPROVED_ANNOTATION
from pgwarden.api.sets import SET_LABEL
from pgwarden.engine.recovery.locks import lock_key

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]
TENANT_LABEL = {"pgwarden.io/tenant-db": "true"}
INVOICES = "CREATE TABLE invoices (id int PRIMARY KEY, total numeric NOT NULL DEFAULT 0);"


@pytest.fixture
def set_operator(
    kube: LocalCluster, namespace: str, crds: None, helm: Path, tmp_path: Path
) -> Iterator[ChartOperator]:
    """The chart with sets.selectSecrets=true: its Role may list and watch Secrets (names only are read)."""
    yield from chart_operator(kube, namespace, helm, tmp_path, extra={"sets": {"selectSecrets": True}})


def tenant(name: str, url: str, **labels: str) -> Obj:
    manifest = secret(name, uri=url)
    manifest["metadata"]["labels"] = {**TENANT_LABEL, **labels}
    return manifest


def tenants(pg: LocalPostgres, count: int, first: int = 1) -> dict[str, str]:
    """`count` fresh databases: Secret name -> URL (on 127.0.0.1, for the test's own checks)."""
    return {f"tenant-{i}-db": pg.create_database() for i in range(first, first + count)}


def migration_set(name: str, *, approval: str = "Automatic", rollout: Obj) -> Obj:
    return resource(
        "DatabaseMigrationSet",
        name,
        {
            "targets": {"selector": {"matchLabels": TENANT_LABEL}},
            "rollout": rollout,
            "template": {
                "approval": approval,
                "migrations": {"inline": [{"name": "0001_invoices.sql", "sql": INVOICES}]},
            },
        },
    )


def children(kube: LocalCluster, namespace: str, plural: str, set_name: str) -> dict[str, Obj]:
    """A set's children by their target Secret."""
    items = kube.get_all(plural, namespace, "-l", f"{SET_LABEL}={set_name}")
    return {item["spec"]["database"]["secretRef"]["name"]: item for item in items}


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def job_spans(
    kube: LocalCluster, namespace: str, by_target: dict[str, Obj]
) -> dict[str, tuple[datetime, datetime]]:
    """Each target's migration Job: when it started and when it ended (complete or failed). A child of a set
    has one Job, its run (no preview, no second attempt): a second one fails here rather than hide."""
    uid_to_target = {child["metadata"]["uid"]: target for target, child in by_target.items()}
    spans = {}
    for job in kube.get_all("jobs", namespace):
        target = uid_to_target.get(job["metadata"]["labels"].get("pgwarden.io/resource-uid"))
        if target is None:
            continue
        assert target not in spans, f"{target} has more than one Job: {job['metadata']['name']}"
        assert "-migrate-" in job["metadata"]["name"], job["metadata"]["name"]
        status = job["status"]
        ended = status.get("completionTime") or next(
            c["lastTransitionTime"] for c in status["conditions"] if c["type"] in ("Failed", "Complete")
        )
        spans[target] = (moment(status["startTime"]), moment(ended))
    return spans


def table_columns(url: str, table: str) -> list[str] | None:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
            return None
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        return [row[0] for row in rows]


def has_schema(url: str, schema: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regnamespace(%s)", (schema,)).fetchone() != (None,)


def test_a_set_rolls_out_canary_first_then_two_at_a_time_and_halts_on_the_failing_tenant(
    kube: LocalCluster, set_operator: ChartOperator, pg: LocalPostgres
) -> None:
    namespace = set_operator.namespace
    databases = tenants(pg, 6)
    with psycopg.connect(databases["tenant-4-db"], autocommit=True) as conn:  # tenant 4 will fail
        conn.execute("CREATE TABLE invoices (legacy text)")
        conn.execute("INSERT INTO invoices VALUES ('a'), ('b'), ('c')")
    kube.apply(*in_namespace(namespace, *(tenant(name, url) for name, url in databases.items())))
    # Tenant 5 runs beside tenant 4 and must not end first, or tenant 6 would rightly take its slot before
    # the failure: it waits for pgwarden's migrator lock, held here until the set has halted.
    with psycopg.connect(databases["tenant-5-db"], autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [lock_key("pgwarden")])
        kube.apply(
            *in_namespace(
                namespace, migration_set("fleet", rollout={"canary": 1, "maxParallel": 2, "maxFailures": 1})
            )
        )
        wait_status(kube, set_operator, "dbmigset", "fleet", lambda s: s.get("phase") == "Halted", 600)
    status = wait_status(
        kube,
        set_operator,
        "dbmigset",
        "fleet",
        lambda s: s.get("phase") == "Halted" and not s["targets"]["running"],
        600,
    )
    print(f"\n$ kubectl get dbmigset\n{kube.kubectl('get', 'dbmigset', '-n', namespace).stdout}")

    assert [f["target"] for f in status["failures"]] == ["tenant-4-db"]
    assert "already exists" in status["failures"][0]["message"]
    assert "tenant-4-db" in status["message"]
    assert condition(status, "Halted")["status"] == "True"
    by_target = children(kube, namespace, "databasemigrations", "fleet")
    assert len(by_target) == 6, "one child per tenant, listed by its label"
    spans = job_spans(kube, namespace, by_target)
    canary_end = spans["tenant-1-db"][1]
    assert all(start >= canary_end for target, (start, _) in spans.items() if target != "tenant-1-db"), spans
    for _, (start, _end) in spans.items():
        running = [t for t, (s, e) in spans.items() if s <= start < e]
        assert len(running) <= 2, (start, spans)
    failed_at = spans["tenant-4-db"][1]
    assert all(start <= failed_at for start, _ in spans.values()), (
        "no target starts after the failure",
        spans,
    )
    assert "tenant-6-db" not in spans, "the target after the failure never starts"
    assert status["targets"]["skipped"] == 6 - len(spans)

    for target, (_, _) in spans.items():
        phase = by_target[target]["status"]["phase"]
        if target == "tenant-4-db":
            assert phase == "RolledBack"
        else:
            assert phase == "Succeeded" and table_columns(databases[target], "invoices") == ["id", "total"]
    assert table_columns(databases["tenant-4-db"], "invoices") == ["legacy"], "the failed tenant is as it was"
    with psycopg.connect(databases["tenant-4-db"]) as conn:
        assert conn.execute("SELECT count(*) FROM invoices").fetchone() == (3,)
    untouched = by_target["tenant-6-db"]
    assert untouched["status"]["phase"] == "AwaitingApproval"
    assert "waiting for its turn in DatabaseMigrationSet fleet" in untouched["status"]["message"]
    assert table_columns(databases["tenant-6-db"], "invoices") is None
    assert not has_schema(databases["tenant-6-db"], "pgwarden"), (
        "a tenant never started is never connected to"
    )
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(set_operator.http(set_operator.metrics_port, "/metrics"))
        for sample in family.samples
    }
    labels = {"namespace": namespace, "name": "fleet"}
    assert samples[("pgwarden_set_halted", tuple(sorted(labels.items())))] == 1.0
    failed = {**labels, "kind": "DatabaseMigrationSet", "state": "failed"}
    assert samples[("pgwarden_set_targets", tuple(sorted(failed.items())))] == 1.0
    assert_never_shown(kube, set_operator, pg.password)


def test_a_manual_set_is_approved_once_and_a_tenant_added_later_runs_the_approved_sql(
    kube: LocalCluster, set_operator: ChartOperator, pg: LocalPostgres
) -> None:
    namespace = set_operator.namespace
    databases = tenants(pg, 6)
    kube.apply(*in_namespace(namespace, *(tenant(name, url) for name, url in databases.items())))
    kube.apply(
        *in_namespace(
            namespace, migration_set("manual", approval="Manual", rollout={"canary": 1, "maxParallel": 3})
        )
    )
    waiting = wait_status(
        kube,
        set_operator,
        "dbmigset",
        "manual",
        lambda s: s.get("phase") == "AwaitingApproval" and s["targets"]["total"] == 6,
    )
    assert len(children(kube, namespace, "databasemigrations", "manual")) == 6
    assert not kube.get_all("jobs", namespace), "nothing runs before the approval"
    digest = waiting["approval"]["digest"]
    assert f"{APPROVED_ANNOTATION}=1-{digest}" in waiting["message"]
    kube.kubectl("annotate", "dbmigset", "manual", "-n", namespace, f"{APPROVED_ANNOTATION}=1-{digest}")

    done = wait_status(kube, set_operator, "dbmigset", "manual", lambda s: s.get("phase") == "Complete", 600)
    assert done["targets"]["done"] == "6/6" and done["versions"] == [{"version": "0001", "targets": 6}]
    assert condition(done, "Complete")["status"] == "True"
    for url in databases.values():
        assert table_columns(url, "invoices") == ["id", "total"]
    by_target = children(kube, namespace, "databasemigrations", "manual")
    assert {c["metadata"]["annotations"][APPROVED_ANNOTATION] for c in by_target.values()} == {"1"}

    seventh = tenants(pg, 1, first=7)
    kube.apply(*in_namespace(namespace, *(tenant(name, url) for name, url in seventh.items())))
    wait_status(
        kube,
        set_operator,
        "dbmigset",
        "manual",
        lambda s: s.get("phase") == "Complete" and s["targets"]["done"] == "7/7",
        300,
    )
    child = children(kube, namespace, "databasemigrations", "manual")["tenant-7-db"]
    assert child["spec"]["migrations"] == {"inline": [{"name": "0001_invoices.sql", "sql": INVOICES}]}
    assert table_columns(seventh["tenant-7-db"], "invoices") == ["id", "total"]
    table = kube.kubectl("get", "dbmigset", "manual", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "TARGETS", "FAILED", "PHASE"]
    assert row.split()[:4] == ["manual", "7/7", "0", "Complete"]


def test_a_backup_set_gives_every_tenant_a_scheduled_backup_in_its_own_folder_and_counts_them(
    kube: LocalCluster, set_operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    namespace = set_operator.namespace
    databases = tenants(pg, 6)
    bucket = s3.create_bucket()
    backup_set = resource(
        "DatabaseBackupSet",
        "nightly",
        {
            "targets": {"selector": {"matchLabels": TENANT_LABEL}},
            "template": {"storage": s3_storage(s3, bucket, "tenants/"), "schedule": "* * * * *"},
        },
    )
    manifests = [*(tenant(name, url) for name, url in databases.items()), s3_secret(s3), backup_set]
    kube.apply(*in_namespace(namespace, *manifests))
    status = wait_status(
        kube,
        set_operator,
        "dbbackupset",
        "nightly",
        lambda s: (s.get("targets") or {}).get("backedUp") == 6,
        600,
    )
    kube.kubectl(
        "patch", "dbbackupset", "nightly", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {"template": {"suspend": True}}}),
    )  # fmt: skip
    assert status["targets"]["done"] == "6/6" and status["targets"]["total"] == 6
    assert status["newestBackup"] >= status["oldestBackup"]
    by_target = children(kube, namespace, "databasebackups", "nightly")
    assert sorted(by_target) == sorted(databases)
    cronjobs = {
        c["metadata"]["labels"]["pgwarden.io/resource-uid"] for c in kube.get_all("cronjobs", namespace)
    }
    assert {child["metadata"]["uid"] for child in by_target.values()} <= cronjobs
    client = s3.client()
    for child in by_target.values():
        folder = f"tenants/{namespace}/{child['metadata']['name']}/"
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=folder).get("Contents", [])]
        assert any(key.endswith("manifest.json") for key in keys), (folder, keys)
        assert child["status"]["lastBackup"]["location"].startswith(f"s3://{bucket}/{folder}")
    assert status_of(kube, "dbbackupset", "nightly", namespace)["phase"] in ("Ready", "Pending")
    assert_never_shown(kube, set_operator, pg.password, s3.secret_key)


def test_the_operator_with_sets_select_secrets_may_list_and_watch_secret_names_but_never_read_one(
    kube: LocalCluster, set_operator: ChartOperator, tmp_path: Path
) -> None:
    """The grant RBAC can give is list and watch (a token could read values with it); what the operator asks
    for is a table of names without objects, which carries no value, even one kubectl's last-applied
    annotation holds. The same list with objects (what RBAC would allow) does carry it: the check can fail."""
    from pgwarden.operator.kube import NAMES_ONLY, Kube, load_configuration, names_only_query

    namespace = set_operator.namespace
    canary = f"canary-{secrets.token_hex(8)}"
    kube.apply(*in_namespace(namespace, tenant("tenant-x-db", "postgresql://u:" + canary + "@127.0.0.1/x")))
    kubeconfig = kube.service_account_kubeconfig(namespace, "pgwarden", tmp_path / "operator.kubeconfig")
    for verb, allowed in (("get", "no"), ("list", "yes"), ("watch", "yes")):
        answer = kube.kubectl(
            "auth", "can-i", verb, "secrets", "-n", namespace, kubeconfig=kubeconfig, check=False
        )
        assert answer.stdout.strip() == allowed, verb
    got = kube.kubectl("get", "secret", "tenant-x-db", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert got.returncode != 0 and "forbidden" in got.stderr.lower()

    operator_kube = Kube(load_configuration(str(kubeconfig)))
    assert operator_kube.secret_names(namespace, "pgwarden.io/tenant-db=true") == ["tenant-x-db"]
    path = f"/api/v1/namespaces/{namespace}/secrets"
    names_only: Any = operator_kube.request("GET", path, query=names_only_query(""), accept=NAMES_ONLY)
    with_objects: Any = operator_kube.request("GET", path, accept=NAMES_ONLY)  # includeObject: its default
    assert canary in json.dumps(with_objects), "kubectl apply kept the value in last-applied-configuration"
    assert canary not in json.dumps(names_only)


def test_without_sets_select_secrets_a_selector_set_says_what_to_grant_and_a_listed_set_needs_nothing(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    """The default chart grants nothing on Secrets: a selector set stays Pending naming the chart value, and
    a set that lists its Secrets works all the same."""
    namespace = operator.namespace
    databases = tenants(pg, 2)
    kube.apply(*in_namespace(namespace, *(tenant(name, url) for name, url in databases.items())))
    selecting = migration_set("selecting", rollout={"canary": 0, "maxParallel": 2})
    listing = migration_set("listing", rollout={"canary": 0, "maxParallel": 2})
    listing["spec"]["targets"] = {"list": [{"name": name} for name in databases]}
    kube.apply(*in_namespace(namespace, selecting, listing))
    refused = wait_status(
        kube, operator, "dbmigset", "selecting", lambda s: "sets.selectSecrets=true" in s.get("message", "")
    )
    assert refused["phase"] == "Pending"
    assert not children(kube, namespace, "databasemigrations", "selecting")
    done = wait_status(kube, operator, "dbmigset", "listing", lambda s: s.get("phase") == "Complete", 300)
    assert done["targets"]["done"] == "2/2"
    for url in databases.values():
        assert table_columns(url, "invoices") == ["id", "total"]


def test_a_drift_check_names_the_tenant_whose_schema_was_changed_by_hand(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    """Issue 21, item 5: the set's drift CronJob, run as `kubectl create job --from` does, connects to each
    tenant read only with that tenant's own Secret, and the set's status names the one changed by hand."""
    namespace = operator.namespace
    databases = tenants(pg, 3)
    kube.apply(*in_namespace(namespace, *(tenant(name, url) for name, url in databases.items())))
    watched = migration_set("watched", rollout={"canary": 1, "maxParallel": 2})
    watched["spec"]["targets"] = {"list": [{"name": name} for name in databases]}
    watched["spec"]["drift"] = {"schedule": "0 3 1 1 *"}  # once a year: this test runs it by hand
    kube.apply(*in_namespace(namespace, watched))
    done = wait_status(kube, operator, "dbmigset", "watched", lambda s: s.get("phase") == "Complete", 300)
    assert condition(done, "Drifted")["reason"] == "NotCheckedYet"
    (cronjob,) = [
        c
        for c in kube.get_all("cronjobs", namespace)
        if c["metadata"]["labels"].get("pgwarden.io/task") == "drift"
    ]
    assert cronjob["metadata"]["ownerReferences"][0]["name"] == "watched"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = {item["name"] for item in pod["containers"][0]["env"]}
    assert not env & {"DATABASE_URL", "PGHOST", "PGPASSWORD"}, "each tenant's credentials under its own names"

    with psycopg.connect(databases["tenant-2-db"], autocommit=True) as conn:
        conn.execute("ALTER TABLE invoices ADD COLUMN note text")
    states = {name: schema_state_rows(url) for name, url in databases.items()}
    kube.kubectl(
        "create", "job", "drift-now", f"--from=cronjob/{cronjob['metadata']['name']}", "-n", namespace
    )
    status = wait_status(
        kube,
        operator,
        "dbmigset",
        "watched",
        lambda s: (s.get("drift") or {}).get("reports") is not None,
        240,
    )
    print(f"\n$ kubectl get dbmigset watched -o yaml (status.drift)\n{json.dumps(status['drift'], indent=2)}")
    drift = status["drift"]
    assert (drift["targets"], drift["inSync"], drift["drifted"], drift["unchecked"]) == (3, 2, 1, 0)
    (named,) = drift["driftedTargets"]
    assert named["target"] == "tenant-2-db"
    assert "column public.invoices.note added since the last run" in named["message"]
    drifted = condition(status, "Drifted")
    assert (drifted["status"], drifted["reason"]) == ("True", "SchemaDrift")
    assert drifted["message"].startswith("1 of 3 target(s) drifted: tenant-2-db (")
    assert status["phase"] == "Complete", "drift is reported, never a reason to halt or rerun"
    reasons = [e["reason"] for e in events(kube, namespace, "watched")]
    assert reasons.count("SchemaDrift") == 1, reasons
    logs = kube.kubectl("logs", "job/drift-now", "-n", namespace).stdout
    assert "tenant-2-db: column public.invoices.note: added since the last run" in logs, logs
    for name, url in databases.items():
        assert schema_state_rows(url) == states[name], f"{name}: the check wrote nothing"
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(operator.http(operator.metrics_port, "/metrics"))
        for sample in family.samples
    }
    assert samples[("pgwarden_set_drifted_targets", (("name", "watched"), ("namespace", namespace)))] == 1.0
    assert_never_shown(kube, operator, pg.password)


def schema_state_rows(url: str) -> object:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*), max(id) FROM pgwarden.schema_state").fetchone()
