# ping as a plain OCI container: a static ping-host, the ping component and
# spin.toml under /app, the component compiled ahead of time. Nothing else: no
# shell, no libc, no package manager.
#
# `make image` prepares the build context and builds this file daemonlessly
# (podman/buildah); it needs no `RUN`, so no OCI runtime is involved. It is named
# Dockerfile so that `docker build .` and `podman build .` find it as well,
# once `make image-context` has produced:
#   target/image/ping-host                               (static, musl, stripped)
#   target/wasm32-wasip2/wasm/ping_component.wasm        (the component)
#   target/image/precompiled/<sha256 of the Wasm>.cwasm  (`ping-host precompile`)
#
# Runs as uid/gid 65532 with a read-only root file system: it writes nothing.
# Listens on 0.0.0.0:8080. Configure it as under containerd-shim-spin, with
# SPIN_VARIABLE_* (SPIN_VARIABLE_REDIS_HOST, _REDIS_PORT, _REDIS_PASSWORD, ...).
FROM scratch

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z

LABEL org.opencontainers.image.title="ping" \
      org.opencontainers.image.description="GET /ping counts pings in Redis: the ping Spin component on ping-host" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.authors="ping maintainers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="scratch"

COPY target/image/ping-host /app/ping-host
COPY spin.toml /app/spin.toml
COPY target/wasm32-wasip2/wasm/ping_component.wasm /app/target/wasm32-wasip2/wasm/ping_component.wasm
COPY target/image/precompiled/ /app/precompiled/

ENV SPIN_HTTP_LISTEN_ADDR=0.0.0.0:8080
USER 65532:65532
WORKDIR /app
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/ping-host"]
CMD ["up", "--manifest", "/app/spin.toml", "--precompiled", "/app/precompiled", "--no-cache"]
