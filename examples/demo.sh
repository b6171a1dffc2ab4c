#!/bin/sh
# The README's first command ("Try it"): start the embedded dev proxy on a free loopback
# port, run the example app through stronghold-init, stop the proxy.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
proxy_pid=
cleanup() {
    [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A throwaway bootstrap token for this demo only.
# It goes to the proxy through STRONGHOLD_DEV_TOKEN, not --token: an argv is
# readable by every local user.
token=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
STRONGHOLD_DEV_TOKEN=$token stronghold-init dev-proxy --secrets "$here/dev-secrets.env" --listen 127.0.0.1:0 \
    > "$work/proxy.out" &
proxy_pid=$!

# The dev proxy prints its URL as its first line; wait for it (at most 10 s).
tries=0
until [ -s "$work/proxy.out" ]; do
    tries=$((tries + 1))
    [ "$tries" -le 100 ] || { echo "demo: the dev proxy did not start" >&2; exit 1; }
    sleep 0.1
done
STRONGHOLD_PROXY_URL=$(head -n 1 "$work/proxy.out")
STRONGHOLD_BOOTSTRAP_TOKEN=$token
export STRONGHOLD_PROXY_URL STRONGHOLD_BOOTSTRAP_TOKEN

echo "demo: dev proxy at $STRONGHOLD_PROXY_URL"
echo "demo: stronghold-init check --env-file examples/app.env"
stronghold-init check --env-file "$here/app.env"
echo "demo: stronghold-init --env-file examples/app.env -- python3 examples/show_credentials.py"
stronghold-init --env-file "$here/app.env" -- python3 "$here/show_credentials.py"
