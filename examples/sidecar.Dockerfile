# syntax=docker/dockerfile:1.7
# A small image that is just stronghold-init, for the sidecar and init-container
# patterns (examples/kubernetes/, examples/compose.yaml). Build context: the
# repository root.
#   docker buildx build -f examples/sidecar.Dockerfile -t stronghold-init:0.1.0 .
FROM python:3.11-slim-bookworm
COPY pyproject.toml README.md /src/
COPY injector/ /src/injector/
RUN pip install --no-cache-dir /src && rm -rf /src
USER 1000:1000
ENTRYPOINT ["stronghold-init"]
CMD ["--help"]
