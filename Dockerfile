# Build stage: compile the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin coach-worker

# Runtime stage: a small Debian with CA certificates, the binary and the Airtable schema file.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /data coach \
 && mkdir -p /data && chown coach /data
COPY --from=build /src/target/release/coach-worker /usr/local/bin/coach-worker
COPY airtable /app/airtable
WORKDIR /app
USER coach
ENV COACH_LISTEN=0.0.0.0:8080 \
    COACH_DATA_DIR=/data \
    COACH_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/data"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["coach-worker"]
CMD ["serve"]
