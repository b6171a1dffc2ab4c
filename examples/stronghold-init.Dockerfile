# An image that holds only the Python-free stronghold-init bundle, at
# /opt/stronghold, for any other Dockerfile to copy in:
#
#   FROM stronghold-init:0.1.0 AS stronghold-init
#   ...
#   COPY --from=stronghold-init /opt/stronghold /opt/stronghold
#   ENTRYPOINT ["/opt/stronghold/stronghold-init", "--"]
#
# Build it from the repository root after scripts/build-bundle (docs/bundle.md;
# docs/containers.md walks through it):
#
#   python scripts/build-bundle
#   docker build -f examples/stronghold-init.Dockerfile -t stronghold-init:0.1.0 .
#
# FROM scratch: the image is a carrier, not something to run. The bundle needs
# a glibc Linux (x86_64 or aarch64, as built); the image it is copied into
# provides the C library. No Python is involved at any point after the build.
FROM scratch
COPY dist/stronghold-init/ /opt/stronghold/
