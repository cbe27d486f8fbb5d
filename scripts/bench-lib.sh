# Shared helpers of the benchmark scripts (sourced, not run): scripts/bench.sh,
# scripts/bench-forward.sh, scripts/bench-register-auth.sh, scripts/soak.sh,
# scripts/bench-robustness.sh.
# shellcheck shell=bash

# Stop one process by PID: SIGTERM, up to 5 s for it to exit, then SIGKILL; reaps it.
bench_stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "PID $pid did not stop on SIGTERM within 5 s; SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Nanoseconds of CPU every thread of process $1 has run so far (the kernel's per-thread
# accounting, /proc/PID/task/*/schedstat; %.0f, since mawk's %d stops at 2^31).
bench_cpu_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{t += $1} END {printf "%.0f\n", t}'
}

# CPU clock ticks (user + system, every thread) used so far by a process and its child
# processes (Kamailio's forked workers).
bench_cpu_ticks() {
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        if [ -r "/proc/$p/stat" ]; then
            total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
        fi
    done
    echo "$total"
}

# A free UDP port on 127.0.0.1.
bench_free_port() {
    python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Wait up to 10 s until something answers an OPTIONS on 127.0.0.1:$1 (any response will do:
# a registrar that refuses OPTIONS with 405 is up too).
bench_wait_sip() {
    local port=$1 i
    for ((i = 0; i < 100; i++)); do
        if python3 - "$port" <<'EOF'; then return 0; fi
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.1)
msg = ("OPTIONS sip:127.0.0.1:%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKready;rport\r\n"
       "From: <sip:probe@127.0.0.1>;tag=r\r\nTo: <sip:127.0.0.1>\r\nCall-ID: ready\r\nCSeq: 1 OPTIONS\r\n"
       "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n") % sys.argv[1]
s.sendto(msg.encode(), ("127.0.0.1", int(sys.argv[1])))
try:
    s.recvfrom(65535)
except OSError:
    sys.exit(1)
EOF
        sleep 0.1
    done
    return 1
}

# Bind sip:$1@127.0.0.1:$2 to 127.0.0.1:$3 through the registrar on 127.0.0.1:$2 (one REGISTER,
# expires 3600, no authentication); succeeds on a 200 within 2 s. For peers that do not register
# themselves (SIPp's built-in uas).
bench_register() {
    python3 - "$1" "$2" "$3" <<'EOF'
import socket, sys
user, port, contact = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.bind(("127.0.0.1", 0))
me = s.getsockname()[1]
msg = (f"REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n"
       f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKbenchreg{contact};rport\r\n"
       f"From: <sip:{user}@127.0.0.1:{port}>;tag=benchreg\r\nTo: <sip:{user}@127.0.0.1:{port}>\r\n"
       f"Call-ID: benchreg-{contact}@127.0.0.1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"
       f"Contact: <sip:{user}@127.0.0.1:{contact}>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n")
s.sendto(msg.encode(), ("127.0.0.1", port))
try:
    reply = s.recvfrom(65535)[0].decode(errors="replace")
except OSError:
    sys.exit("no answer to REGISTER")
if not reply.startswith("SIP/2.0 200"):
    sys.exit(reply.split("\r\n", 1)[0])
EOF
}

# Kamailio's TLS module configuration for the benchmarks, written to $1 with the certificates
# of scripts/bench-tls-certs.sh in $2: it shows the server certificate and verifies the
# servers it connects to (the flooder's sink) as sipshard does.
bench_kamailio_tls_cfg() {
    cat >"$1" <<EOF
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = $2/server.pem
private_key = $2/server.key

[client:default]
method = TLSv1.2+
verify_certificate = yes
ca_list = $2/ca.pem
EOF
}

# The Python with matplotlib (a pyenv python3 may lack the distribution's packages).
plot_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if "$py" -c 'import matplotlib' 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    return 1
}
