# syntax=docker/dockerfile:1.7
# A small image that is just stronghold-init, for the sidecar and init-container
# patterns (examples/kubernetes/, examples/compose.yaml). Build context: the
# repository root.
#   docker buildx build -f examples/sidecar.Dockerfile -t stronghold-init:0.1.0 .
#
# Build arguments (none is a secret): BASE, any Debian-based image with Python
# 3.11+ and venv; WHEELHOUSE, a directory of the build context holding every
# wheel (then the build needs no network: tests/test_container_patterns.py).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
ARG WHEELHOUSE=
# One layer: the source is bind-mounted, copied to /tmp for the build and removed;
# pip and setuptools leave the venv in the same layer (nothing installs at run time).
RUN --mount=type=bind,target=/context \
    python3 -m venv /opt/stronghold \
 && if [ -n "$WHEELHOUSE" ]; then \
      /opt/stronghold/bin/pip install --no-cache-dir --no-index --find-links "/context/$WHEELHOUSE" stronghold-init; \
    else \
      mkdir /tmp/src && cp -r /context/pyproject.toml /context/README.md /context/injector /tmp/src/ \
   && /opt/stronghold/bin/pip install --no-cache-dir /tmp/src && rm -rf /tmp/src; \
    fi \
 && /opt/stronghold/bin/pip uninstall --yes pip setuptools \
 && ln -s /opt/stronghold/bin/stronghold-init /usr/local/bin/stronghold-init
USER 1000:1000
ENTRYPOINT ["stronghold-init"]
CMD ["--help"]
