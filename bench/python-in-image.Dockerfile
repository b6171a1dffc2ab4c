# syntax=docker/dockerfile:1.7
# The pre-bundle examples/Dockerfile: Python from Debian plus a venv in the runtime image.
# bench/bundle_image.py builds it only to measure what it adds to the Node image, beside
# the bundle (docs/benchmarks.md). Build args: BASE, BUILDER, WHEELHOUSE (see git history).
ARG BASE=node:20-bookworm-slim
ARG BUILDER=python:3.11-slim-bookworm

# --- stage 1: stronghold-init and its dependencies as wheels -------------------
FROM ${BUILDER} AS stronghold
ARG WHEELHOUSE=
WORKDIR /src
COPY pyproject.toml README.md ./
COPY injector/ injector/
RUN --mount=type=bind,target=/context \
    mkdir /wheels \
 && if [ -n "$WHEELHOUSE" ]; then cp /context/"$WHEELHOUSE"/*.whl /wheels/; \
    else pip wheel --no-cache-dir --wheel-dir /wheels .; fi

# --- stage 2: the app's dependencies ------------------------------------------
FROM ${BASE} AS deps
WORKDIR /app
COPY examples/node-app/package.json ./
# The npm token for private packages is a BuildKit secret: mounted for this one
# RUN as a file under /run/secrets, never written to a layer, an ENV or an ARG.
# The .npmrc holding it is removed whether npm succeeded or not; node_modules
# exists even for an app without dependencies (the COPY below needs it).
RUN --mount=type=secret,id=npm_token,required=false \
    if [ -f /run/secrets/npm_token ]; then \
      echo "//registry.npmjs.org/:_authToken=$(cat /run/secrets/npm_token)" > /tmp/.npmrc; \
    fi; \
    NPM_CONFIG_USERCONFIG=/tmp/.npmrc npm install --omit=dev --no-audit --no-fund; \
    status=$?; rm -f /tmp/.npmrc; mkdir -p node_modules; exit $status

# --- stage 3: the runtime image -----------------------------------------------
FROM ${BASE}
# stronghold-init is a Python program: a base without Python 3.11+ and venv gets
# Debian's interpreter (node:20-bookworm-slim has none). Nothing is fetched when
# the base already has them.
RUN if ! python3 -c 'import sys, ensurepip, venv; assert sys.version_info >= (3, 11)' 2>/dev/null; then \
      apt-get update \
   && apt-get install -y --no-install-recommends python3 python3-venv \
   && rm -rf /var/lib/apt/lists/*; \
    fi
# A private virtual environment, linked onto PATH. pip and setuptools are
# removed in the same layer: they are ~25 MB unpacked, stronghold-init and its
# dependencies under 1 MB, and nothing installs into this venv at run time.
RUN --mount=type=bind,from=stronghold,source=/wheels,target=/wheels \
    python3 -m venv /opt/stronghold \
 && /opt/stronghold/bin/pip install --no-cache-dir --no-index --find-links /wheels stronghold-init \
 && /opt/stronghold/bin/pip uninstall --yes pip setuptools \
 && ln -s /opt/stronghold/bin/stronghold-init /usr/local/bin/stronghold-init

WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY examples/node-app/ ./

# Only references and non-secret settings are baked in. The bootstrap token
# arrives at run time as a mounted file, never through the image.
ENV NODE_ENV=production \
    STRONGHOLD_BOOTSTRAP_TOKEN_FILE=/run/secrets/stronghold-bootstrap \
    STRONGHOLD_DIR=/run/stronghold \
    STRIPE_SECRET_KEY=stronghold://stripe/live?scope=charges:write&ttl=15m \
    DATABASE_PASSWORD_FILE=stronghold://postgres/app?ttl=1h

USER node
ENTRYPOINT ["stronghold-init", "--"]
CMD ["node", "server.js"]
