#!/usr/bin/env bash
# The layering of src/: no import cycle between its modules, and the rules of the table below.
#
# The graph is cargo-modules' (https://crates.io/crates/cargo-modules): which module uses an
# item of which other, after name resolution, so a `pub use` re-export or a full `crate::` path in
# code counts as a `use` line does. Test code (`#[cfg(test)]`) is included: a cycle through a
# test is still a cycle; `--no-tests` leaves it out. Cycles are found by tsort (coreutils) on the
# edges between the top-level modules of src/ (src/sip, src/proxy.rs, ...).
#
# Why not `cargo modules dependencies --acyclic`: in cargo-modules 0.27 it checks the graph of
# all items before any filter applies, where every method naming its own type is a cycle
# (`UserDb` -> `UserDb::parse` -> `UserDb`), so it fails on any crate with methods.
#
# Installs cargo-modules (the version below) when it is missing: 15 to 50 minutes of compiling
# on 2 cores, once. Exit status: 0 when the layering holds, 1 when it does not, 2 when the graph
# could not be had.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_MODULES_VERSION=0.27.0
PACKAGE=sipshard

# What the sans-I/O core never imports: configuration, the runtime and its I/O, persistence,
# the metrics endpoint (the core counts into `counters`, below it), the admin API, its client
# and the rings between peers.
OUTER="config runtime transport persist metrics admin cluster ctl replication"

# One rule a line: a module of src/, then `only` and the modules it may import (none when the
# list is empty), or `never` and the modules it must not import. A name with `::` stands for
# that module and everything under it. A rule for a module not in the tree is skipped (with a
# note): the names are those after the reshaping of "One layered house before new transports".
RULES="
sip        only
stun       only
hep        only
location   only   sip
counters   only   sip
identity   never  $OUTER
registrar  never  $OUTER
auth       never  $OUTER
proxy      never  $OUTER
replication only  location
admin      never  config runtime transport ctl cluster
cluster    never  config runtime transport ctl admin persist
ctl        only
"

cfg_test=(--cfg-test)
case "${1:-}" in
    --no-tests) cfg_test=() ;;
    "") ;;
    *)
        echo "usage: $0 [--no-tests]" >&2
        exit 2
        ;;
esac

if ! cargo modules --version >/dev/null 2>&1; then
    echo "check-layers: installing cargo-modules $CARGO_MODULES_VERSION (a long compile, once)"
    cargo install cargo-modules --version "$CARGO_MODULES_VERSION" --locked
fi
installed=$(cargo modules --version | awk '{print $2}')
if [ "$installed" != "$CARGO_MODULES_VERSION" ]; then
    echo "check-layers: cargo-modules $installed, tested with $CARGO_MODULES_VERSION" >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Modules only (no functions, types or traits: their edges are lifted to their module), `use`
# edges only (no "owns" edge from a module to its children), nothing outside the crate.
# CHECK_LAYERS_DOT=file checks that graph instead (to try the rules on a made-up one).
if [ -n "${CHECK_LAYERS_DOT:-}" ]; then
    cp "$CHECK_LAYERS_DOT" "$work/graph.dot"
elif ! cargo modules dependencies --package "$PACKAGE" --lib "${cfg_test[@]}" \
    --no-fns --no-types --no-traits --no-owns --no-externs --no-sysroot \
    >"$work/graph.dot" 2>"$work/stderr"; then
    echo "check-layers: cargo modules dependencies failed:" >&2
    cat "$work/stderr" >&2
    exit 2
fi

# `"sipshard::a::b" -> "sipshard::c" [label="uses", ...]` -> `a::b c` (the crate root left out).
sed -nE 's/^ *"([^"]+)" -> "([^"]+)" \[label="uses".*/\1 \2/p' "$work/graph.dot" |
    awk -v crate="$PACKAGE" '{
        a = $1; b = $2
        if (a == crate || b == crate) next
        sub("^" crate "::", "", a); sub("^" crate "::", "", b)
        print a, b
    }' | sort -u >"$work/edges"
if [ ! -s "$work/edges" ]; then
    echo "check-layers: no use edge in the graph (has the output of cargo-modules changed?)" >&2
    exit 2
fi

# Module names of the tree: every end of an edge and every node of the graph.
{
    sed -nE 's/^ *"([^"]+)" \[label=.*/\1/p' "$work/graph.dot" |
        awk -v crate="$PACKAGE" '$1 != crate { sub("^" crate "::", ""); print }'
    tr ' ' '\n' <"$work/edges"
} | sort -u >"$work/modules"

# The edges between top-level modules, each with the module edges it stands for.
awk '{
    split($1, a, "::"); split($2, b, "::")
    if (a[1] == b[1]) next
    key = a[1] " " b[1]
    if (!(key in via)) { order[++n] = key; via[key] = "" }
    via[key] = via[key] (via[key] == "" ? "" : ", ") $1 " -> " $2
}
END { for (i = 1; i <= n; i++) print order[i], via[order[i]] }
' "$work/edges" >"$work/top"

status=0

# Cycles: tsort names the modules of each loop it has to break.
if ! cut -d' ' -f1,2 "$work/top" | tsort >/dev/null 2>"$work/tsort"; then
    status=1
    awk '
        NR == FNR { a = $1; b = $2; $1 = ""; $2 = ""; sub(/^  /, ""); edge[a, b] = $0; next }
        /input contains a loop/ { if (n) report(); n = 0; next }
        { sub(/^tsort: /, ""); loop[++n] = $0 }
        END { if (n) report() }
        function report(   i, j) {
            printf "cycle between the modules of src/:"
            for (i = 1; i <= n; i++) printf " %s", loop[i]
            print ""
            for (i = 1; i <= n; i++)
                for (j = 1; j <= n; j++)
                    if ((loop[i], loop[j]) in edge)
                        printf "    %s -> %s: %s\n", loop[i], loop[j], edge[loop[i], loop[j]]
        }
    ' "$work/top" "$work/tsort"
fi

# The rules, on every edge leaving the module a rule is about.
printf '%s\n' "$RULES" | awk -v modules="$work/modules" -v edges="$work/edges" '
    function inside(path, m) { return path == m || index(path, m "::") == 1 }
    function top(path,   p) { split(path, p, "::"); return p[1] }
    BEGIN {
        while ((getline line < modules) > 0) present[top(line)] = 1
        ne = 0
        while ((getline line < edges) > 0) { split(line, e, " "); from[++ne] = e[1]; to[ne] = e[2] }
    }
    NF == 0 || /^#/ { next }
    {
        m = $1; kind = $2
        if (!(m in present)) { printf "note: rule for %s skipped: no such module in src/\n", m; next }
        rule = kind == "only" ? "may import only:" : "must not import:"
        if (kind == "only" && NF == 2) rule = rule " nothing of ours"
        for (k = 3; k <= NF; k++) rule = rule " " $k
        for (i = 1; i <= ne; i++) {
            if (!inside(from[i], m) || inside(to[i], m)) continue
            # What is broken: the module imported (`only`), or the forbidden name (`never`).
            what = kind == "only" ? top(to[i]) : ""
            for (k = 3; k <= NF; k++) if (inside(to[i], $k)) what = kind == "only" ? "" : $k
            if (what == "") continue
            key = m SUBSEP what
            if (!(key in via)) { order[++n] = key; why[key] = rule }
            via[key] = via[key] (via[key] == "" ? "" : ", ") from[i] " -> " to[i]
        }
    }
    END {
        for (i = 1; i <= n; i++) {
            split(order[i], pair, SUBSEP)
            printf "layering: %s imports %s (%s %s)\n    %s\n", pair[1], pair[2], pair[1], why[order[i]], via[order[i]]
        }
        exit (n > 0)
    }
' || status=1

if [ "$status" = 0 ]; then
    echo "check-layers: no cycle between the $(cut -d: -f1 "$work/modules" | sort -u | wc -l) modules of src/, and every rule holds"
fi
exit "$status"
