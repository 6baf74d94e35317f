# syntax=docker/dockerfile:1
# Both binaries in one image: `gateway` (default command) and `verifier-worker`.
# Dependencies are built in their own layer (cargo-chef), so a source change
# rebuilds only the workspace crates.

FROM rust:1-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json --bin gateway --bin verifier-worker
COPY . .
RUN cargo build --release --locked --bin gateway --bin verifier-worker

FROM debian:bookworm-slim AS runtime
# curl serves the compose health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin verifier
COPY --from=builder /src/target/release/gateway /src/target/release/verifier-worker /usr/local/bin/
USER verifier
EXPOSE 8080
CMD ["gateway"]
