# syntax=docker/dockerfile:1.7
# A small image that is just stronghold-init, for the sidecar and init-container
# patterns (examples/kubernetes/, examples/compose.yaml). Build context: the
# repository root. stronghold-init comes in as the Python-free bundle from the
# image built by examples/stronghold-init.Dockerfile (docs/bundle.md),
# as in examples/Dockerfile: no interpreter in this image.
#
#   python scripts/build-bundle
#   docker build -f examples/stronghold-init.Dockerfile -t stronghold-init:0.1.0 .
#   docker build -f examples/sidecar.Dockerfile -t stronghold-init-sidecar:0.1.0 .
#
# Build arguments (none is a secret: they show in the image history):
#   BASE              any glibc image; Debian's slim image gives the Compose
#                     healthcheck its `test` command (a distroless base has none)
#   STRONGHOLD_IMAGE  the image holding the bundle at /opt/stronghold
ARG BASE=debian:bookworm-slim
ARG STRONGHOLD_IMAGE=stronghold-init:0.1.0

FROM ${STRONGHOLD_IMAGE} AS stronghold-init

FROM ${BASE}
# One directory, no package manager step: the bundle needs only the C library.
COPY --from=stronghold-init /opt/stronghold /opt/stronghold
ENV PATH=/opt/stronghold:$PATH
USER 1000:1000
ENTRYPOINT ["stronghold-init"]
CMD ["--help"]
