# The `heron` release binary on a slim Debian, with the example policies as defaults.
#
#   docker build -t heron .
#   docker run -p 8080:8080 -e HERON_AUTH__TOKENS='["change-me"]' heron
#
# Mount your own policies over /srv/heron/policies, and either a volume on /srv/heron/data
# (SQLite) or set HERON_DATABASE_URL (PostgreSQL with pgvector). See docs/deployment.md.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p heron-cli \
    && install -D target/release/heron /out/heron

FROM debian:bookworm-slim
# CA roots for the model, Slack and threat-intelligence APIs (rustls reads the system store).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /srv/heron heron \
    && install -d -o heron -g heron /srv/heron/data
COPY --from=build /out/heron /usr/local/bin/heron
COPY --chown=heron:heron policies /srv/heron/policies
USER heron
WORKDIR /srv/heron
ENV HERON_ADDR=0.0.0.0:8080 \
    HERON_DATA_DIR=/srv/heron/data \
    HERON_LOG__FORMAT=json
EXPOSE 8080
ENTRYPOINT ["heron"]
CMD ["serve"]
