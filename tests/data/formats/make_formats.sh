#!/usr/bin/env bash
# Make the decoder-format test captures in this directory from real kernel TCP
# traffic between network namespaces, then manifest.json from tshark/tcpdump.
#
#   sudo bash tests/data/formats/make_formats.sh
#
# Needs root, iproute2, tcpdump, tshark, editcap, mergecap, python3 (stdlib only).
# Idempotent: every output is rewritten (timestamps, sequence numbers and ports
# change from run to run, manifest.json with them); namespaces pcfmt-* and the
# processes it starts are removed on exit, also on failure.
#
# Addresses: client 10.88.0.1 / fd88::1, server 10.88.0.2 / fd88::2 (each run
# has its own namespaces, so they are reused).  Server port 5001 (TCP and UDP),
# client ports 40001.. fixed so the files are easy to read.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE
HELPER="$HERE/formats_helper.py"
TMP=$(mktemp -d /tmp/pcfmt.XXXXXX)
NS_C=pcfmt-cli
NS_S=pcfmt-srv
NS_W=pcfmt-sw
SNAP=256
PIDS=()

[ "$(id -u)" = 0 ] || { echo "make_formats.sh: run as root" >&2; exit 1; }
for tool in ip tcpdump tshark editcap mergecap python3 gzip; do
    command -v "$tool" >/dev/null || { echo "make_formats.sh: $tool missing" >&2; exit 1; }
done

h() { python3 "$HELPER" "$@"; }
in_c() { ip netns exec "$NS_C" "$@"; }
in_s() { ip netns exec "$NS_S" "$@"; }
in_w() { ip netns exec "$NS_W" "$@"; }

stop_pids() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -INT "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

del_netns() {
    local ns
    for ns in "$NS_C" "$NS_S" "$NS_W"; do
        if [ -e "/var/run/netns/$ns" ]; then ip netns del "$ns"; fi
    done
}

cleanup() {
    stop_pids
    del_netns
    rm -rf "$TMP"
}
trap cleanup EXIT

# new_ns NAME v4|v6: a namespace with quiet IPv6 (no router solicitations, no
# link-local addresses) or, for v4, IPv6 switched off so nothing but our traffic
# appears on the wire.
new_ns() {
    ip netns add "$1"
    ip -n "$1" link set lo up
    if [ "$2" = v4 ]; then
        ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    else
        ip netns exec "$1" sysctl -qw net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0 \
            net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.default.addr_gen_mode=1 \
            net.ipv6.conf.default.accept_dad=0
    fi
}

mac_of() { ip -n "$1" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }

# addresses on the client's and the server's interface, static neighbours
address_pair() {  # CLIENT_IF SERVER_IF MAC_SEEN_BY_CLIENT MAC_SEEN_BY_SERVER FAMILY
    ip -n "$NS_C" addr add 10.88.0.1/24 dev "$1"
    ip -n "$NS_S" addr add 10.88.0.2/24 dev "$2"
    ip -n "$NS_C" neigh replace 10.88.0.2 lladdr "$3" dev "$1" nud permanent
    ip -n "$NS_S" neigh replace 10.88.0.1 lladdr "$4" dev "$2" nud permanent
    if [ "$5" = v6 ]; then
        ip -n "$NS_C" addr add fd88::1/64 dev "$1" nodad
        ip -n "$NS_S" addr add fd88::2/64 dev "$2" nodad
        ip -n "$NS_C" neigh replace fd88::2 lladdr "$3" dev "$1" nud permanent
        ip -n "$NS_S" neigh replace fd88::1 lladdr "$4" dev "$2" nud permanent
    fi
}

# setup_veth v4|v6: client c0 <-> server s0, one veth pair
setup_veth() {
    del_netns
    new_ns "$NS_C" "$1"
    new_ns "$NS_S" "$1"
    ip link add c0 netns "$NS_C" type veth peer name s0 netns "$NS_S"
    ip -n "$NS_C" link set c0 up
    ip -n "$NS_S" link set s0 up
    in_c python3 "$HELPER" txcsum-off c0   # real checksums in the captured frames
    in_s python3 "$HELPER" txcsum-off s0
    address_pair c0 s0 "$(mac_of "$NS_S" s0)" "$(mac_of "$NS_C" c0)" "$1"
    sleep 2   # let link-up chatter (IPv6 MLD) pass before capturing
}

# setup_switch v4 TAGS: client c0 <-> c0p [switch ns: relay, trunk t0<->t1] s0p <-> s0 server
setup_switch() {
    del_netns
    new_ns "$NS_C" v4
    new_ns "$NS_S" v4
    new_ns "$NS_W" v4
    ip link add c0 netns "$NS_C" type veth peer name c0p netns "$NS_W"
    ip link add s0 netns "$NS_S" type veth peer name s0p netns "$NS_W"
    ip -n "$NS_W" link add t0 type veth peer name t1
    ip -n "$NS_C" link set c0 up
    ip -n "$NS_S" link set s0 up
    for i in c0p s0p t0 t1; do ip -n "$NS_W" link set "$i" up; done
    in_c python3 "$HELPER" txcsum-off c0
    in_s python3 "$HELPER" txcsum-off s0
    address_pair c0 s0 "$(mac_of "$NS_S" s0)" "$(mac_of "$NS_C" c0)" v4
    start_bg relay in_w python3 "$HELPER" vlanrelay "$2" c0p s0p t0 t1
    sleep 1
}

# setup_tun: tun0 in the client and tun0 in the server namespace, joined by a relay
setup_tun() {
    del_netns
    new_ns "$NS_C" v6
    new_ns "$NS_S" v6
    start_bg tunrelay in_c python3 "$HELPER" tunrelay "$NS_S"
    ip -n "$NS_C" link set tun0 up
    ip -n "$NS_S" link set tun0 up
    ip -n "$NS_C" addr add 10.88.0.1/24 dev tun0
    ip -n "$NS_S" addr add 10.88.0.2/24 dev tun0
    ip -n "$NS_C" addr add fd88::1/64 dev tun0 nodad
    ip -n "$NS_S" addr add fd88::2/64 dev tun0 nodad
    sleep 2
}

# start_bg NAME CMD...: background process whose stdout says "ready" when it is
start_bg() {
    local name=$1; shift
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PIDS+=($!)
    for _ in $(seq 100); do
        grep -q ready "$TMP/$name.out" 2>/dev/null && return 0
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    cat "$TMP/$name.err" >&2
    echo "make_formats.sh: $name did not start" >&2
    exit 1
}

# cap NS FILE TCPDUMP_ARGS...: start tcpdump, wait until it listens
cap() {
    local ns=$1 file=$2; shift 2
    ip netns exec "$ns" tcpdump -Z root -U -n "$@" -w "$file" 2>"$file.log" &
    PIDS+=($!)
    for _ in $(seq 100); do
        grep -q "listening on" "$file.log" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$file.log" >&2
    echo "make_formats.sh: tcpdump for $file did not start" >&2
    exit 1
}

NSERVER=0
server() { NSERVER=$((NSERVER + 1)); start_bg "server$NSERVER" in_s python3 "$HELPER" server "$@"; }
finish_run() { sleep 0.5; stop_pids; }

NOMCAST="not (ip6 and ip6 multicast)"

# ---------------------------------------------------------------- run 1: IPv4 over Ethernet
# one connection, a UDP datagram, a ping; captured five ways at once
setup_veth v4
server 5001
cap "$NS_C" "$OUT/le_usec.pcap" -i c0 -s $SNAP
cap "$NS_C" "$OUT/le_nsec.pcap" -i c0 -s $SNAP --time-stamp-precision=nano
cap "$NS_C" "$OUT/sll.pcap" -i any -y LINUX_SLL -s $SNAP
cap "$NS_C" "$OUT/sll2.pcap" -i any -y LINUX_SLL2 -s $SNAP
cap "$NS_C" "$TMP/any_nsec.pcap" -i any -y LINUX_SLL2 -s $SNAP --time-stamp-precision=nano
in_c python3 "$HELPER" client 10.88.0.2 5001 40001
in_c python3 "$HELPER" udp 10.88.0.2 5001 64
in_c python3 "$HELPER" ping 10.88.0.2 32
finish_run
h byteswap "$OUT/le_usec.pcap" "$OUT/be_usec.pcap"
h byteswap "$OUT/le_nsec.pcap" "$OUT/be_nsec.pcap"
# Ethernet (c0, microseconds) + Linux cooked v2 (any, nanoseconds) interfaces
rm -f "$OUT/two_interfaces.pcapng"
mergecap -F pcapng -w "$OUT/two_interfaces.pcapng" "$OUT/le_usec.pcap" "$TMP/any_nsec.pcap"
gzip -9 -n -c "$OUT/le_usec.pcap" >"$OUT/le_usec.pcap.gz"
gzip -9 -n -c "$OUT/two_interfaces.pcapng" >"$OUT/two_interfaces.pcapng.gz"

# ---------------------------------------------------------------- run 2: IPv4 + IPv6 over Ethernet
setup_veth v6
server 5001
server 5001 --v6
cap "$NS_C" "$TMP/dual.pcap" -i c0 -s $SNAP "$NOMCAST"
cap "$NS_C" "$OUT/eth_ipv6.pcap" -i c0 -s $SNAP "ip6 and not ip6 multicast"
in_c python3 "$HELPER" client 10.88.0.2 5001 40001
in_c python3 "$HELPER" client fd88::2 5001 40002
in_c python3 "$HELPER" udp 10.88.0.2 5001 64
in_c python3 "$HELPER" udp fd88::2 5001 64
in_c python3 "$HELPER" ping 10.88.0.2 32
in_c python3 "$HELPER" ping fd88::2 32
finish_run
h eth2af "$TMP/dual.pcap" "$OUT/null.pcap" 0
h eth2af "$TMP/dual.pcap" "$OUT/loop.pcap" 108

# ---------------------------------------------------------------- run 3: raw IP on a tun device
setup_tun
server 5001
server 5001 --v6
cap "$NS_C" "$OUT/raw.pcap" -i tun0 -s $SNAP "$NOMCAST"
cap "$NS_C" "$TMP/raw4.pcap" -i tun0 -s $SNAP ip
cap "$NS_C" "$TMP/raw6.pcap" -i tun0 -s $SNAP "ip6 and not ip6 multicast"
in_c python3 "$HELPER" client 10.88.0.2 5001 40001
in_c python3 "$HELPER" client fd88::2 5001 40002
in_c python3 "$HELPER" udp 10.88.0.2 5001 64
in_c python3 "$HELPER" udp fd88::2 5001 64
in_c python3 "$HELPER" ping 10.88.0.2 32
in_c python3 "$HELPER" ping fd88::2 32
finish_run
# the records already are bare IPv4 / IPv6 packets: editcap only relabels them
editcap -F pcap -T rawip4 "$TMP/raw4.pcap" "$OUT/ipv4.pcap"
editcap -F pcap -T rawip6 "$TMP/raw6.pcap" "$OUT/ipv6.pcap"

# ---------------------------------------------------------------- runs 4, 5: 802.1Q and QinQ trunks
for spec in "vlan q:10" "qinq ad:100,q:10"; do
    set -- $spec
    setup_switch v4 "$2"
    server 5001
    cap "$NS_W" "$OUT/$1.pcap" -i t0 -s $SNAP
    in_c python3 "$HELPER" client 10.88.0.2 5001 40001
    in_c python3 "$HELPER" udp 10.88.0.2 5001 64
    in_c python3 "$HELPER" ping 10.88.0.2 32
    finish_run
done

# ---------------------------------------------------------------- run 6: IPv4 options
setup_veth v4
server 5001
cap "$NS_C" "$OUT/ipv4_options.pcap" -i c0 -s $SNAP
# record route with room for one address (+ EOL), then NOP NOP NOP EOL
in_c python3 "$HELPER" client 10.88.0.2 5001 40001 --ipopts 0707040000000000
in_c python3 "$HELPER" client 10.88.0.2 5001 40002 --ipopts 01010100
in_c python3 "$HELPER" ping 10.88.0.2 32
finish_run

# ---------------------------------------------------------------- run 7: IPv6 extension headers
setup_veth v6
server 5001 --v6 --v6ext
cap "$NS_C" "$OUT/ipv6_ext.pcap" -i c0 -s $SNAP "$NOMCAST"
in_c python3 "$HELPER" client fd88::2 5001 40001 --v6ext
in_c python3 "$HELPER" ping fd88::2 32
finish_run

# ---------------------------------------------------------------- run 8: IP fragments
setup_veth v6
server 5001
server 5001 --v6
cap "$NS_C" "$OUT/fragments.pcap" -i c0 -s $SNAP "$NOMCAST"
in_c python3 "$HELPER" client 10.88.0.2 5001 40001
in_c python3 "$HELPER" udp 10.88.0.2 5001 3000
in_c python3 "$HELPER" ping 10.88.0.2 3000
in_c python3 "$HELPER" udp fd88::2 5001 3000
finish_run

# ---------------------------------------------------------------- run 9: snap length 64
setup_veth v4
server 5001
cap "$NS_C" "$OUT/snaplen64.pcap" -i c0 -s 64
in_c python3 "$HELPER" client 10.88.0.2 5001 40001
in_c python3 "$HELPER" udp 10.88.0.2 5001 64
in_c python3 "$HELPER" ping 10.88.0.2 32
finish_run
del_netns

# ---------------------------------------------------------------- broken and foreign files
h broken "$OUT"
editcap -F pcap -r "$OUT/le_usec.pcap" "$TMP/first3.pcap" 1-3
editcap -F pcap -T user0 "$TMP/first3.pcap" "$OUT/unsupported_linktype.pcap"

rm -f "$OUT"/*.log
h manifest "$OUT"
ls -l "$OUT"
