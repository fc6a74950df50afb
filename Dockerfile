# syntax=docker/dockerfile:1
# One image for the operator (`pgwarden operator`) and its Jobs (`pgwarden job <kind>`).
#   docker build -t ghcr.io/pgwarden/pgwarden:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

# Build pgwarden and every dependency as wheels, so the runtime image needs no compiler and no network
# to install them.
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# The PGDG signing key, taken from Debian's own postgresql-common package (signed by Debian's archive),
# so the runtime stage trusts apt.postgresql.org without downloading a key over the network.
FROM debian:${DEBIAN_RELEASE}-slim AS pgdg-key
# Any postgresql-common of the release carries the key; nothing of this stage but the key file is kept.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-common \
    && rm -rf /var/lib/apt/lists/*

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime
ARG DEBIAN_RELEASE
# pg_dump must be at least the server's major version: ship the newest client tools PGDG publishes.
ARG PG_MAJOR=18
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="pgwarden" \
      org.opencontainers.image.description="Declarative PostgreSQL backups, migrations, verification and rollback for Kubernetes: operator and Job runner" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/pgwarden/pgwarden" \
      io.pgwarden.postgresql-client-major="${PG_MAJOR}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=pgdg-key /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc /usr/share/keyrings/pgdg.asc
# Only the client package (pg_dump, pg_restore, psql), never a server; no version pin below the major,
# so a rebuild picks up PGDG's latest minor release with its fixes.
# hadolint ignore=DL3008
RUN echo "deb [signed-by=/usr/share/keyrings/pgdg.asc] https://apt.postgresql.org/pub/repos/apt ${DEBIAN_RELEASE}-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
    && rm -rf /var/lib/apt/lists/* \
    && /usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump --version \
    && /usr/lib/postgresql/${PG_MAJOR}/bin/pg_restore --version \
    && /usr/lib/postgresql/${PG_MAJOR}/bin/psql --version

# The wheels are bind-mounted, not copied, so they add no layer; pip itself leaves with them.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/pgwarden-*.whl \
    && pip uninstall --yes --quiet pip setuptools wheel \
    && pgwarden --version \
    && python -c "import pgwarden.operator.main, pgwarden.job"

# A numeric non-root user with a passwd entry (libpq looks the user up) and no home or login shell.
RUN groupadd --gid 65532 pgwarden \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pgwarden

ENV PGWARDEN_PG_BIN=/usr/lib/postgresql/${PG_MAJOR}/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["pgwarden"]
CMD ["operator"]
