#!/usr/bin/env bash
# The single test command for sipshard.
#
# Integration tests talk to real SIP peers that nobody here wrote: SIPp (Debian package
# sip-tester), Kamailio (and its TLS module, package kamailio-tls-modules), sipsak, the
# baresip softphone (Debian package baresip-core) and sngrep (the HEP receiver of tests/hep.rs);
# fail2ban-regex reads our log as fail2ban would; tests/cluster.rs runs nodes sharing Redis
# (redis-server, with redis-cli, and redis-sentinel). This script installs whichever is missing
# when it can (as root with apt-get); otherwise it says which are missing and the tests that
# need them fail with that message -- they never pass silently. It checks the layering of src/
# (which installs cargo-modules once when it is missing), then runs every test of the workspace
# in release mode (the timing-sensitive paths are tested as they ship).
set -euo pipefail
cd "$(dirname "$0")/.."

# Whether Kamailio's module $1 (tls: tls.so) is installed, in the directories the tests look in
# (crates/testkit/src/peers/kamailio.rs, module_dir).
kamailio_module() {
    local dir
    for dir in /usr/lib/*/kamailio/modules /usr/lib64/kamailio/modules /usr/lib/kamailio/modules \
        /usr/local/lib64/kamailio/modules /usr/local/lib/kamailio/modules; do
        [ -f "$dir/$1.so" ] && return 0
    done
    return 1
}

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || missing+=(kamailio)
kamailio_module tls || missing+=(kamailio-tls-modules)
command -v sipsak >/dev/null 2>&1 || missing+=(sipsak)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)
# tests/hep.rs receives SIP capture (HEP) with sngrep.
command -v sngrep >/dev/null 2>&1 || missing+=(sngrep)
# tests/nat.rs builds a real NAT in network namespaces.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
# tests/logs.rs checks the fail2ban filter of scripts/fail2ban with fail2ban's own reader.
command -v fail2ban-regex >/dev/null 2>&1 || missing+=(fail2ban)
# tests/cluster.rs shares the location table between nodes through a real Redis, and fails one
# over with Redis Sentinel.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing test peers: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "test.sh: missing test peers: ${missing[*]}" >&2
        echo "test.sh: install them with: apt-get install -y ${missing[*]}" >&2
        echo "test.sh: the interoperability tests will fail until then" >&2
    fi
fi

# The layering of src/ (no import cycle, imports point down): see scripts/check-layers.sh.
bash scripts/check-layers.sh

exec cargo test --workspace --release "$@"
