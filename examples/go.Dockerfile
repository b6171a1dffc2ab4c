# syntax=docker/dockerfile:1.7
#
# A Go service on a glibc distroless base, supervised by the Python-free
# stronghold-init bundle: no shell, no package manager, no Python in the image.
#
#   python scripts/build-bundle
#   docker build -f examples/stronghold-init.Dockerfile -t stronghold-init:0.1.0 .
#   docker build -f examples/go.Dockerfile -t go-app .
#   docker run --rm \
#     --tmpfs /run/stronghold:uid=65532,gid=65532,mode=0700 \
#     -v "$PWD/bootstrap-token:/run/secrets/stronghold-bootstrap:ro" \
#     -e STRONGHOLD_PROXY_URL=https://stronghold.internal:8443 \
#     go-app
#
# The base must have glibc (distroless/base or /cc, not /static): the bundle
# is a glibc program. Build arguments (none is a secret):
#   GO_BUILDER       an image with the Go toolchain
#   BASE             the runtime base (glibc, distroless-style)
#   STRONGHOLD_IMAGE the image built from examples/stronghold-init.Dockerfile
ARG GO_BUILDER=golang:1.22-bookworm
ARG BASE=gcr.io/distroless/base-debian12:nonroot
ARG STRONGHOLD_IMAGE=stronghold-init:0.1.0

FROM ${STRONGHOLD_IMAGE} AS stronghold-init

FROM ${GO_BUILDER} AS build
WORKDIR /src
COPY examples/go-app/ ./
# A builder image that already holds /out/go-app (tests/test_bundle_containers.py
# builds the app with Debian's Go and runs offline) skips the compile.
RUN if [ ! -x /out/go-app ]; then CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/go-app .; fi

FROM ${BASE}
COPY --from=stronghold-init /opt/stronghold /opt/stronghold
COPY --from=build /out/go-app /app/go-app
# Only references and non-secret settings are baked in; the bootstrap token is
# a file mounted at run time.
ENV STRONGHOLD_BOOTSTRAP_TOKEN_FILE=/run/secrets/stronghold-bootstrap \
    STRONGHOLD_DIR=/run/stronghold \
    STRIPE_SECRET_KEY=stronghold://stripe/live?scope=charges:write&ttl=15m \
    DATABASE_PASSWORD_FILE=stronghold://postgres/app?ttl=1h
USER 65532:65532
ENTRYPOINT ["/opt/stronghold/stronghold-init", "--"]
CMD ["/app/go-app"]
