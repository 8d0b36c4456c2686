# Parley: the `parley` binary, its prompts and the demo knowledge base.
#
#   docker build -t parley .
#   docker run -p 8080:8080 -v parley-data:/data parley
#
# With no DATABASE_URL, REDIS_URL or QDRANT_URL it runs on its embedded backends, keeping its state
# in /data; docker-compose.yml runs it against PostgreSQL, Redis and Qdrant instead.

# --- build --------------------------------------------------------------------------------------
# cargo-chef turns the manifests into a recipe; dependencies are cooked from the recipe alone, so
# their layer is rebuilt only when Cargo.toml or Cargo.lock change, not on every source edit.
# (gcc from the image builds ring, zstd and SQLite; TLS is rustls, so no OpenSSL.)
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
# The crate itself. Migrations are embedded at compile time, so migrations/ must be here too.
COPY . .
RUN cargo build --release --locked --bin parley \
    && mkdir -p prompts knowledge

# --- run ----------------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 parley \
    && useradd --system --uid 10001 --gid parley --home-dir /app --shell /usr/sbin/nologin parley \
    && mkdir -p /data \
    && chown parley:parley /data

COPY --from=builder /src/target/release/parley /usr/local/bin/parley
# Read-only for the service user: prompts and documents change by mounting or rebuilding.
COPY --from=builder /src/prompts /app/prompts
COPY --from=builder /src/knowledge /app/knowledge

WORKDIR /app
USER parley
ENV PARLEY_LISTEN=0.0.0.0:8080 \
    PARLEY_DATA_DIR=/data
VOLUME /data
EXPOSE 8080

# No curl in the image: bash's /dev/tcp speaks just enough HTTP to ask /healthz, on the port
# PARLEY_LISTEN names.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PARLEY_LISTEN##*:} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

CMD ["parley", "serve"]
