#!/usr/bin/env bash
# Install (or upgrade, or remove) street-gateway on a Raspberry Pi running Raspberry Pi OS /
# Debian bookworm, in one command:
#
#   sudo deploy/raspberrypi/install.sh --enable-uart --device sniffer-1:footfall/sniffer-1
#
# Idempotent: a second run with the same options changes no file. Files this script owns (unit,
# udev rules, journald and Mosquitto snippets) are rewritten when they differ from the repo;
# files that belong to the site (gateway.yaml, secrets.env, the Mosquitto password and ACL
# entries, device passwords) are created once and never overwritten. Re-running it from a
# newer checkout is also the upgrade path: it reinstalls the package and restarts the service.
#
# --destdir DIR lays the same tree down under DIR (DESTDIR-style, for packaging and tests)
# and skips everything that needs the live system: apt, useradd, chown, systemctl, udevadm.
# Run with --help for the options.
set -euo pipefail

readonly PROG=${0##*/}
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR

# Final paths on the target system (DESTDIR is prefixed only when writing).
readonly SERVICE=street-gateway
readonly SERVICE_USER=street-gateway
readonly VENV=/opt/street-gateway
readonly BIN_LINK=/usr/local/bin/street-gateway
readonly ETC_DIR=/etc/street-gateway
readonly CONFIG=$ETC_DIR/gateway.yaml
readonly SECRETS=$ETC_DIR/secrets.env
readonly DEVICE_SECRETS_DIR=$ETC_DIR/devices
readonly STATE_DIR=/var/lib/street-gateway
readonly UNIT=/etc/systemd/system/street-gateway.service
readonly UDEV_RULES=/etc/udev/rules.d/99-street-gateway-serial.rules
readonly JOURNALD_DROPIN=/etc/systemd/journald.conf.d/street-gateway.conf
readonly MOSQ_CONF=/etc/mosquitto/conf.d/street-gateway.conf
readonly MOSQ_PASSWD=/etc/mosquitto/street-gateway.passwd
readonly MOSQ_ACL=/etc/mosquitto/street-gateway.acl
readonly MOSQ_DROPIN=/etc/systemd/system/mosquitto.service.d/street-gateway.conf
# The RAM-only broker for personal-at-source devices (see mosquitto-street-gateway-personal.conf).
readonly PMOSQ_SERVICE=street-gateway-personal-broker
readonly PMOSQ_UNIT=/etc/systemd/system/street-gateway-personal-broker.service
readonly PMOSQ_CONF=/etc/mosquitto/street-gateway-personal.conf
readonly PMOSQ_PASSWD=/etc/mosquitto/street-gateway-personal.passwd
readonly PMOSQ_ACL=/etc/mosquitto/street-gateway-personal.acl
# TLS for listeners beyond loopback: what Mosquitto reads, and the local CA's key (root only).
readonly TLS_DIR=/etc/mosquitto/street-gateway-tls
readonly CA_KEY=$ETC_DIR/tls/ca.key
readonly MQTT_GATEWAY_USER=gateway
# Plain text on loopback only; TLS on the sensor LAN. Main broker / personal-data broker.
readonly MQTT_PORT=1883
readonly MQTTS_PORT=8883
readonly PMQTT_PORT=1884
readonly PMQTTS_PORT=8884

DESTDIR=""
SOURCE=""
SENSOR_LAN=""
ENABLE_UART=0
WITH_VENV=0
UNINSTALL=0
PURGE=0
DEVICES=()
PERSONAL_DEVICES=()
PERSONAL_RETAIN=""
TLS_CERT=""
TLS_KEY=""
TLS_CA=""
# The interpreter for the venv and helpers; see resolve_python.
PYTHON=python3

# What changed in this run, so a second run restarts nothing.
CHANGED_UDEV=0
CHANGED_JOURNALD=0
CHANGED_MOSQUITTO=0
CHANGED_PMOSQ=0
CHANGED_BOOT=0
NEW_DEVICE_SECRETS=()

usage() {
    cat <<EOF
Usage: sudo $PROG [OPTIONS]

Install street-gateway as a systemd service with a local Mosquitto broker for the sensors.

Options:
  --source DIR         repository to pip install from (default: the one holding this script)
  --sensor-lan ADDR    also let the brokers listen on ADDR (the sensor LAN's address on this
                       Pi), with TLS only: ADDR:$MQTTS_PORT (main) and ADDR:$PMQTTS_PORT (personal
                       data). They always listen in plain text on 127.0.0.1:$MQTT_PORT and
                       127.0.0.1:$PMQTT_PORT. Creates a local CA and server certificate unless
                       --tls-cert is given. Remembered; 127.0.0.1 drops the LAN listeners again
  --tls-cert FILE      with --tls-key (and --tls-ca, the chain devices trust): the borough's
                       server certificate for the sensor-LAN listeners instead of a local CA
  --tls-key FILE
  --tls-ca FILE
  --device NAME:PREFIX create Mosquitto user NAME allowed to publish under PREFIX/# on the main
                       broker (QoS 1, kept across restarts), for devices that send nothing
                       personal (air-quality and weather nodes, meters, people-counting
                       cameras, paxcounters: counts identify nobody); repeatable. The
                       random password is stored root-only under $DEVICE_SECRETS_DIR/
  --personal-device NAME:PREFIX
                       the same on the personal-data broker, for devices whose messages are
                       personal at source (probe sniffers, OCPP relays, chargers that
                       report RFID cards and sessions):
                       QoS 0, no retain, never written to disk
  --personal-retain    let the personal-data broker accept retained messages (OpenEVSE always
                       sends a retained announce and last will); still RAM only. Remembered;
                       --no-personal-retain refuses them again (the default)
  --enable-uart        Raspberry Pi GPIO UART for sensors: enable_uart=1 in config.txt and
                       no serial console in cmdline.txt (takes effect after a reboot)
  --destdir DIR        install the file tree under DIR only; no apt, users, chown, systemctl
  --with-venv          with --destdir: also create the venv and pip install (slow)
  --uninstall          remove the service, venv, user and installed snippets; keep
                       $ETC_DIR, $STATE_DIR and the Mosquitto users
  --purge              with --uninstall: also delete those (config, secrets, outbox data)
  -h, --help           show this help
EOF
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
warn() { printf '%s: WARNING: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

# Live system, as opposed to a --destdir tree.
live() { [[ -z $DESTDIR ]]; }
# Where a final path is written: under DESTDIR when given.
r() { printf '%s%s' "$DESTDIR" "$1"; }

parse_args() {
    while (($#)); do
        case $1 in
        --source) SOURCE=${2:?--source needs a directory}; shift ;;
        --source=*) SOURCE=${1#*=} ;;
        --destdir) DESTDIR=${2:?--destdir needs a directory}; shift ;;
        --destdir=*) DESTDIR=${1#*=} ;;
        --sensor-lan) SENSOR_LAN=${2:?--sensor-lan needs an address}; shift ;;
        --sensor-lan=*) SENSOR_LAN=${1#*=} ;;
        --device) DEVICES+=("${2:?--device needs NAME:PREFIX}"); shift ;;
        --device=*) DEVICES+=("${1#*=}") ;;
        --personal-device) PERSONAL_DEVICES+=("${2:?--personal-device needs NAME:PREFIX}"); shift ;;
        --personal-device=*) PERSONAL_DEVICES+=("${1#*=}") ;;
        --personal-retain) PERSONAL_RETAIN=true ;;
        --no-personal-retain) PERSONAL_RETAIN=false ;;
        --tls-cert) TLS_CERT=${2:?--tls-cert needs a file}; shift ;;
        --tls-key) TLS_KEY=${2:?--tls-key needs a file}; shift ;;
        --tls-ca) TLS_CA=${2:?--tls-ca needs a file}; shift ;;
        --enable-uart) ENABLE_UART=1 ;;
        --with-venv) WITH_VENV=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done

    ((PURGE == 0 || UNINSTALL == 1)) || die "--purge only goes with --uninstall"
    SOURCE=${SOURCE:-$SCRIPT_DIR/../..}
    [[ -d $SOURCE ]] || die "--source $SOURCE is not a directory"
    SOURCE=$(cd -- "$SOURCE" && pwd)
    if ((UNINSTALL == 0)) && [[ -z $DESTDIR ]] || ((WITH_VENV)); then
        [[ -f $SOURCE/pyproject.toml ]] ||
            die "$SOURCE has no pyproject.toml: give --source the street-gateway repository"
    fi

    if [[ -n $SENSOR_LAN && ! $SENSOR_LAN =~ ^[0-9A-Fa-f.:]+$ ]]; then
        die "--sensor-lan wants an IPv4 or IPv6 address of this Pi, not '$SENSOR_LAN'"
    fi
    if [[ -n $TLS_CERT$TLS_KEY$TLS_CA ]]; then
        [[ -n $TLS_CERT && -n $TLS_KEY ]] || die "--tls-cert and --tls-key go together"
        local f
        for f in "$TLS_CERT" "$TLS_KEY" ${TLS_CA:+"$TLS_CA"}; do
            [[ -r $f ]] || die "cannot read $f"
        done
    fi
    local spec name prefix
    for spec in ${DEVICES[@]+"${DEVICES[@]}"} ${PERSONAL_DEVICES[@]+"${PERSONAL_DEVICES[@]}"}; do
        [[ $spec == *:* ]] || die "--device wants NAME:PREFIX, not '$spec'"
        name=${spec%%:*}
        prefix=$(device_prefix "$spec")
        # Names end up in the passwd file (no ':'), in file names and in ACL lines.
        [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ ]] ||
            die "--device name '$name': letters, digits, '.', '_', '-' only (max 63)"
        [[ $name != "$MQTT_GATEWAY_USER" ]] || die "--device name '$name' is reserved"
        # A prefix with wildcards, or one that reaches the gateway's own or $SYS topics, would
        # defeat the point of the ACL.
        [[ $prefix =~ ^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$ ]] ||
            die "--device prefix '$prefix': plain topic levels like footfall/$name, no + or #"
        [[ $prefix != street-gateway && $prefix != street-gateway/* ]] ||
            die "--device prefix '$prefix' is the gateway's own topic space"
    done
    check_new_devices_disjoint

    # Only now, so a typo in the options leaves no half-made tree behind.
    if [[ -n $DESTDIR ]]; then
        mkdir -p -- "$DESTDIR"
        DESTDIR=$(cd -- "$DESTDIR" && pwd)
        [[ $DESTDIR != / ]] || DESTDIR=""
    fi
}

# PREFIX from NAME:PREFIX, without a trailing /# that people type out of habit.
device_prefix() {
    local p=${1#*:}
    p=${p%/#}
    printf '%s' "${p%/}"
}

# Two plain prefixes overlap when they are equal or one is a whole-level prefix of the other
# (footfall/s1 and footfall/s1/probes; not footfall/s1 and footfall/s10): then one device could
# publish as the other.
prefixes_overlap() {
    [[ $1 == "$2" || $1 == "$2"/* || $2 == "$1"/* ]]
}

# The options among themselves: one name per device, no two prefixes overlapping.
check_new_devices_disjoint() {
    local all=() i j a b
    all=(${DEVICES[@]+"${DEVICES[@]}"} ${PERSONAL_DEVICES[@]+"${PERSONAL_DEVICES[@]}"})
    for ((i = 0; i < ${#all[@]}; i++)); do
        for ((j = i + 1; j < ${#all[@]}; j++)); do
            a=${all[i]} b=${all[j]}
            [[ ${a%%:*} != "${b%%:*}" ]] || die "device ${a%%:*} is given twice"
            if prefixes_overlap "$(device_prefix "$a")" "$(device_prefix "$b")"; then
                die "devices ${a%%:*} and ${b%%:*}: prefixes $(device_prefix "$a") and" \
                    "$(device_prefix "$b") overlap, so one could publish as the other"
            fi
        done
    done
}

# "NAME PREFIX" for every device block already in an ACL file.
acl_devices() {
    [[ -f $1 ]] || return 0
    awk '$1 == "user" { u = $2; next }
        u != "" && u != "gateway" && $1 == "topic" { p = $NF; sub(/\/#$/, "", p); print u, p; u = "" }' "$1"
}

# A new device against those both brokers already have (hand edits included).
check_against_installed() {
    local name=$1 prefix=$2 other_acl=$3 own_acl=$4 n p
    while read -r n p; do
        [[ -n $n ]] || continue
        [[ $n != "$name" ]] || die "device $name already exists on the other broker ($other_acl)"
    done < <(acl_devices "$(r "$other_acl")")
    while read -r n p; do
        [[ -n $n && $n != "$name" ]] || continue
        if prefixes_overlap "$prefix" "$p"; then
            die "devices $name and $n: prefixes $prefix and $p overlap, so one could publish as the other"
        fi
    done < <(acl_devices "$(r "$own_acl")"; acl_devices "$(r "$other_acl")")
}

# On the live system, Debian's /usr/bin/python3 and nothing else: a python3 that sudo found
# first on PATH (pyenv, conda, /usr/local) may live under /root, which the service user cannot
# read (and ProtectHome=yes hides), and no apt upgrade would ever patch it.
resolve_python() {
    if live; then
        PYTHON=/usr/bin/python3
    fi
    command -v "$PYTHON" >/dev/null || die "$PYTHON is needed (apt-get install python3)"
}

need_root() {
    if live && ((EUID != 0)); then
        die "run as root (sudo $PROG ...), or use --destdir DIR to build a tree without root"
    fi
}

# ---------------------------------------------------------------- small idempotent helpers

# install_file SRC DEST MODE: copy (owner root) when absent or different. Sets WROTE=1 when it
# wrote. (Not signalled by the return code: `if f` or `f || x` would switch off set -e inside
# f and hide a failing install or chown.)
WROTE=0
install_file() {
    local src=$1 dst=$2 mode=$3 out
    out=$(r "$dst")
    WROTE=0
    if [[ -f $out ]] && cmp -s -- "$src" "$out"; then
        return 0
    fi
    mkdir -p -- "$(dirname -- "$out")"
    install -m "$mode" -- "$src" "$out"
    if live; then chown root:root -- "$out"; fi
    log "wrote $dst"
    WROTE=1
}

# install_content DEST MODE < content: as install_file, from stdin.
install_content() {
    local tmp
    tmp=$(mktemp)
    cat >"$tmp"
    install_file "$tmp" "$@"
    rm -f -- "$tmp"
}

# ensure_dir PATH MODE [OWNER:GROUP]: create, and fix mode/owner of the directory itself only.
ensure_dir() {
    local out
    out=$(r "$1")
    if [[ ! -d $out ]]; then
        mkdir -p -- "$out"
        log "created $1/"
    fi
    chmod "$2" -- "$out"
    if live && [[ -n ${3:-} ]]; then
        chown "$3" -- "$out"
    fi
}

# A random password: 32 URL-safe characters, fine in passwd files and env files unquoted.
new_password() {
    "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))'
}

# The Mosquitto 2.x password hash ($7$: PBKDF2-SHA512, 101 rounds, 12-byte salt), the same
# as mosquitto_passwd writes. Done here so the password goes over a pipe (never argv, where
# `ps` shows it) and so --destdir works without Mosquitto installed.
mosquitto_hash() {
    # shellcheck disable=SC2016 # Python source: the $s are literal parts of the hash format.
    "$PYTHON" -c '
import base64, hashlib, os, sys
pw = sys.stdin.readline().rstrip("\n").encode()
salt = os.urandom(12)
dk = hashlib.pbkdf2_hmac("sha512", pw, salt, 101)
print("$7$101$%s$%s" % (base64.b64encode(salt).decode(), base64.b64encode(dk).decode()))
'
}

# Value of KEY in an env file, without surrounding quotes; empty when absent.
env_value() {
    local file=$1 key=$2 v
    v=$(sed -n "s/^[[:space:]]*${key}[[:space:]]*=[[:space:]]*//p" -- "$file" | tail -n 1)
    v=${v%$'\r'}
    if [[ $v =~ ^\"(.*)\"$ || $v =~ ^\'(.*)\'$ ]]; then
        v=${BASH_REMATCH[1]}
    fi
    printf '%s' "$v"
}

# ---------------------------------------------------------------- live-system steps

apt_install_missing() {
    local pkg missing=()
    for pkg in python3 python3-venv mosquitto openssl; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]} (apt)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

create_user() {
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        # System user, no login, no home of its own: it only needs its data dir.
        useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "street-gateway service" \
            --groups dialout "$SERVICE_USER"
        log "created system user $SERVICE_USER (groups: dialout)"
    elif ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx dialout; then
        usermod -a -G dialout "$SERVICE_USER"
        log "added $SERVICE_USER to group dialout"
    fi
}

install_venv() {
    local pip_opts=(--disable-pip-version-check --no-input -q)
    local want have pyver='import sys; print("%d.%d" % sys.version_info[:2])'
    want=$("$PYTHON" -c "$pyver")
    have=$("$(r "$VENV")/bin/python" -c "$pyver" 2>/dev/null || true)
    if [[ -z $have ]]; then
        log "creating venv $VENV (Python $want)"
        "$PYTHON" -m venv -- "$(r "$VENV")"
    elif [[ $have != "$want" ]]; then
        # After an OS upgrade the venv still points at the old interpreter's site-packages.
        log "recreating venv $VENV: Python $have -> $want"
        "$PYTHON" -m venv --clear -- "$(r "$VENV")"
    fi
    [[ -f $SOURCE/requirements.lock ]] || die "$SOURCE/requirements.lock is missing (scripts/lock makes it)"
    log "pip install from $SOURCE/requirements.lock (hash-pinned; a few minutes on a Pi)"
    # Every dependency, and the build backend, at the reviewed version and only if its file's
    # SHA-256 is in the lock: a compromised or re-uploaded package fails the install.
    "$(r "$VENV")/bin/pip" install "${pip_opts[@]}" --require-hashes --no-deps \
        -r "$SOURCE/requirements.lock"
    # The gateway itself from this checkout, built with the locked setuptools, nothing fetched.
    "$(r "$VENV")/bin/pip" install "${pip_opts[@]}" --no-deps --no-build-isolation --no-index \
        -- "$SOURCE"
    "$(r "$VENV")/bin/pip" check -q >/dev/null || die "the installed packages do not fit together (pip check)"
    [[ -x $(r "$VENV")/bin/street-gateway ]] ||
        die "pip install did not provide $VENV/bin/street-gateway"
    compile_service_bytecode
}

# The service runs with PYTHONOPTIMIZE=2 and PYTHONNODEBUGRANGES=1 and reads its bytecode from
# PYTHONPYCACHEPREFIX=$VENV/pycache (street-gateway.service; why: there). Compiled here, for
# the standard library and the venv, from scratch on every run (an upgrade of either leaves
# nothing stale behind); the service never writes bytecode. Should Python's packages change
# afterwards, the service still runs (it compiles what is stale in memory, at a slower start
# and a higher peak) until this script runs again.
readonly PYCACHE=$VENV/pycache
# Never imported by the service, and partly not valid Python (test data)
readonly PYCACHE_SKIP='/(test|tests|idlelib|tkinter|turtledemo|lib2to3|ensurepip|pydoc_data)/'
compile_service_bytecode() {
    local python stdlib
    python=$(r "$VENV")/bin/python
    stdlib=$("$python" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
    log "compiling the service's bytecode (-OO) into $PYCACHE (a minute or two on a Pi)"
    rm -rf -- "$(r "$PYCACHE")"
    # readable by the service user whatever umask this script was started with
    (umask 022 && PYTHONPYCACHEPREFIX=$(r "$PYCACHE") "$python" -OO -X no_debug_ranges -m compileall -q -j 0 \
        -x "$PYCACHE_SKIP" -- "$stdlib" "$(r "$VENV")/lib") ||
        die "compileall could not compile the service's bytecode"
}

# ---------------------------------------------------------------- the tree

install_dirs() {
    # Config readable by the service group, secrets and device passwords by root only.
    ensure_dir "$ETC_DIR" 0750 "root:$SERVICE_USER"
    ensure_dir "$DEVICE_SECRETS_DIR" 0700 root:root
    ensure_dir "$STATE_DIR" 0750 "$SERVICE_USER:$SERVICE_USER"
    # After an --uninstall and reinstall the user may have a new uid: hand the data back.
    if live && [[ $(stat -c %U -- "$STATE_DIR") != "$SERVICE_USER" ]]; then
        chown -R "$SERVICE_USER:$SERVICE_USER" -- "$STATE_DIR"
    fi
}

minimal_config() {
    cat <<'EOF'
# street-gateway configuration: edit, then `sudo street-gateway check -c /etc/street-gateway/gateway.yaml`
# and `sudo systemctl restart street-gateway`. Full reference: `street-gateway schema`,
# examples in config/ of the repository. Secrets: ${VAR} from /etc/street-gateway/secrets.env.
gateway:
  id: change-me-1             # stable: Thing and Datastream ids derive from it
  borough: Change me
  location: {lat: 51.5072, lon: -0.1276}

sensors: []                   # add one entry per sensor; serial ports as /dev/street-gateway/...

inputs:
  mqtt:                       # the local Mosquitto set up by install.sh
    host: 127.0.0.1
    port: 1883
    personal_port: 1884       # its RAM-only twin for personal-at-source devices
    username: gateway
    password: ${LOCAL_MQTT_PASSWORD}

sinks:
  file:
    path: observations.jsonl  # under /var/lib/street-gateway; add influxdb/mqtt for the city
EOF
}

install_config() {
    local example=$SOURCE/config/camden-lamp-column.yaml out
    out=$(r "$CONFIG")
    if [[ -e $out ]]; then
        log "kept existing $CONFIG"
        # Left by an --uninstall (which deletes the group) and now reinstalled: give it back
        # to the new group, or the service could not read it.
        if live && [[ $(stat -c %G -- "$out") == UNKNOWN ]]; then
            chown "root:$SERVICE_USER" -- "$out"
        fi
        return 0
    fi
    if [[ -f $example ]]; then
        install -m 0640 -- "$example" "$out"
        log "wrote $CONFIG from config/camden-lamp-column.yaml: edit it for this site"
    else
        (umask 027 && minimal_config >"$out")
        chmod 0640 -- "$out"
        log "wrote a minimal $CONFIG: edit it for this site"
    fi
    if live; then chown "root:$SERVICE_USER" -- "$out"; fi
}

install_secrets() {
    local out pw
    out=$(r "$SECRETS")
    if [[ -e $out ]]; then
        # Never rewritten; only a missing or empty LOCAL_MQTT_PASSWORD is filled in, because
        # without it the gateway cannot log in to its own broker.
        if [[ -z $(env_value "$out" LOCAL_MQTT_PASSWORD) ]]; then
            pw=$(new_password)
            # Via the environment, not argv: other users can read argv in ps, not environ.
            PW=$pw awk 'BEGIN { done = 0 }
                /^[[:space:]]*LOCAL_MQTT_PASSWORD[[:space:]]*=/ {
                    if (!done) print "LOCAL_MQTT_PASSWORD=" ENVIRON["PW"]; done = 1; next }
                { print } END { if (!done) print "LOCAL_MQTT_PASSWORD=" ENVIRON["PW"] }' \
                "$out" >"$out.new"
            chmod --reference="$out" -- "$out.new"
            if live; then chown --reference="$out" -- "$out.new"; fi
            mv -f -- "$out.new" "$out"
            log "filled in LOCAL_MQTT_PASSWORD in $SECRETS"
        else
            log "kept existing $SECRETS"
        fi
        if [[ $(stat -c %a -- "$out") == *[1-7] ]]; then
            warn "$SECRETS is readable by everyone: chmod 600 $SECRETS"
        fi
        return 0
    fi
    pw=$(new_password)
    (
        umask 077
        cat >"$out" <<EOF
# Secrets for /etc/street-gateway/gateway.yaml, used there as \${NAME}.
# systemd reads this file (EnvironmentFile=) as root before starting the service, so it stays
# 0600 root:root. Syntax: NAME=value, one per line, no spaces around '='.
# Changes need \`sudo systemctl restart street-gateway\` (a reload does not re-read them).

# The gateway's login to the local Mosquitto (user '$MQTT_GATEWAY_USER'). Generated by install.sh;
# if you change it, delete the '$MQTT_GATEWAY_USER' line in $MOSQ_PASSWD and re-run install.sh.
LOCAL_MQTT_PASSWORD=$pw

# Token for the city's InfluxDB-compatible store (sinks.influxdb.token: \${INFLUX_TOKEN}).
INFLUX_TOKEN=

# Password for the city/Datastore MQTT broker (sinks.mqtt.password: \${CITY_MQTT_PASSWORD}).
CITY_MQTT_PASSWORD=
EOF
    )
    chmod 0600 -- "$out"
    if live; then chown root:root -- "$out"; fi
    log "wrote $SECRETS (0600): add INFLUX_TOKEN and CITY_MQTT_PASSWORD"
}

install_systemd_files() {
    local dropin
    # A changed unit needs no flag: activate() always runs daemon-reload, which is cheap and
    # also recovers from an earlier run that stopped halfway.
    install_file "$SCRIPT_DIR/street-gateway.service" "$UNIT" 0644
    install_file "$SCRIPT_DIR/99-street-gateway-serial.rules" "$UDEV_RULES" 0644
    CHANGED_UDEV=$WROTE
    install_file "$SCRIPT_DIR/journald-street-gateway.conf" "$JOURNALD_DROPIN" 0644
    CHANGED_JOURNALD=$WROTE
    install_file "$SCRIPT_DIR/street-gateway-personal-broker.service" "$PMOSQ_UNIT" 0644
    ((WROTE == 0)) || CHANGED_PMOSQ=1
    # The broker is what the sensors talk to: keep it up for years like the gateway, and
    # let it bind the sensor-LAN address only once the network has one.
    dropin=$(
        cat <<'EOF'
# Installed by street-gateway's install.sh.
[Unit]
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=0

[Service]
Restart=always
RestartSec=5
# Its RAM queue is never paged to the SD card's swap, and a crash dumps no core.
MemorySwapMax=0
LimitCORE=0
EOF
    )
    install_content "$MOSQ_DROPIN" 0644 <<<"$dropin"
    ((WROTE == 0)) || CHANGED_MOSQUITTO=1
    # So that `sudo street-gateway check ...` works: sudo's PATH has /usr/local/bin, not the
    # venv. (Dangling in a --destdir tree without --with-venv, as it should be.)
    if [[ $(readlink -- "$(r "$BIN_LINK")" || true) != "$VENV/bin/street-gateway" ]]; then
        mkdir -p -- "$(dirname -- "$(r "$BIN_LINK")")"
        ln -sfn -- "$VENV/bin/street-gateway" "$(r "$BIN_LINK")"
        log "linked $BIN_LINK -> $VENV/bin/street-gateway"
    fi
}

# ---------------------------------------------------------------- Mosquitto

# The sensor-LAN address given now, else the one a previous run configured (TLS listener, or
# the plain one older versions wrote, which this run replaces), else none.
effective_sensor_lan() {
    local out
    out=$(r "$MOSQ_CONF")
    if [[ -n $SENSOR_LAN ]]; then
        [[ $SENSOR_LAN == 127.0.0.1 ]] || printf '%s' "$SENSOR_LAN"
    elif [[ -f $out ]]; then
        sed -n "s/^listener \\($MQTT_PORT\\|$MQTTS_PORT\\) \\(.*\\)$/\\2/p" -- "$out" |
            grep -vx '127\.0\.0\.1' | head -n 1 || true
    fi
}

# --personal-retain / --no-personal-retain, else what the installed config says (default off).
effective_personal_retain() {
    local out
    out=$(r "$PMOSQ_CONF")
    if [[ -n $PERSONAL_RETAIN ]]; then
        printf '%s' "$PERSONAL_RETAIN"
    elif [[ -f $out ]] && grep -qx 'retain_available true' -- "$out"; then
        printf true
    else
        printf false
    fi
}

# The TLS options for a listener on the sensor LAN.
tls_listener_lines() {
    printf 'cafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n' \
        "$TLS_DIR" "$TLS_DIR" "$TLS_DIR"
    printf 'tls_version tlsv1.2\n'
}

# Server certificate for the sensor LAN: the borough's (--tls-cert), or one from a local CA
# made here. The CA key stays root-only under $ETC_DIR/tls, away from the broker; the server
# key is readable by the mosquitto group only. A local certificate that does not name the
# current LAN address is issued again (devices keep trusting the same CA).
ensure_tls() {
    local lan=$1 dir key_dir host ext
    dir=$(r "$TLS_DIR")
    key_dir=$(dirname -- "$(r "$CA_KEY")")
    mkdir -p -- "$dir"
    if [[ -n $TLS_CERT ]]; then
        install -m 0644 -- "$TLS_CERT" "$dir/server.crt.new"
        install -m 0640 -- "$TLS_KEY" "$dir/server.key.new"
        if [[ -n $TLS_CA ]]; then install -m 0644 -- "$TLS_CA" "$dir/ca.crt.new"; fi
        local f
        for f in server.crt server.key ${TLS_CA:+ca.crt}; do
            if cmp -s -- "$dir/$f.new" "$dir/$f"; then rm -f -- "$dir/$f.new"; else
                mv -f -- "$dir/$f.new" "$dir/$f"
                CHANGED_MOSQUITTO=1 CHANGED_PMOSQ=1
            fi
        done
        touch -- "$dir/borough"
        [[ -s $dir/ca.crt ]] || die "--tls-cert without --tls-ca and no CA installed: give --tls-ca"
        log "TLS: using the given server certificate for $lan"
    elif [[ -e $dir/borough ]]; then
        log "TLS: keeping the borough's certificate in $TLS_DIR"
    else
        command -v openssl >/dev/null || die "openssl is needed for the local CA (apt-get install openssl)"
        if [[ ! -s $dir/ca.crt || ! -s $(r "$CA_KEY") ]]; then
            mkdir -p -- "$key_dir"
            chmod 0700 -- "$key_dir"
            (umask 077 && openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
                -nodes -days 7300 -subj "/CN=street-gateway local CA $(hostname -s 2>/dev/null || echo pi)" \
                -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
                -keyout "$(r "$CA_KEY")" -out "$dir/ca.crt" 2>/dev/null)
            chmod 0644 -- "$dir/ca.crt"
            rm -f -- "$dir/server.crt"
            log "TLS: created a local CA: $TLS_DIR/ca.crt (put it on the devices), key $CA_KEY"
        fi
        if [[ ! -s $dir/server.crt ]] ||
            ! openssl x509 -in "$dir/server.crt" -noout -ext subjectAltName 2>/dev/null |
            grep -qE "IP Address:$lan(,|$)"; then
            host=$(hostname -s 2>/dev/null || echo street-gateway)
            ext=$(mktemp)
            printf 'subjectAltName=IP:%s,DNS:%s,DNS:%s.local\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' \
                "$lan" "$host" "$host" >"$ext"
            (umask 027 && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -subj "/CN=$lan" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null)
            openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$(r "$CA_KEY")" \
                -set_serial "0x$(openssl rand -hex 16)" -days 3650 -extfile "$ext" \
                -out "$dir/server.crt" 2>/dev/null
            rm -f -- "$ext" "$dir/server.csr"
            chmod 0644 -- "$dir/server.crt"
            chmod 0640 -- "$dir/server.key"
            CHANGED_MOSQUITTO=1 CHANGED_PMOSQ=1
            log "TLS: server certificate for $lan ($host) issued by the local CA"
        fi
    fi
    if live; then chown -R root:mosquitto -- "$dir"; fi
}

install_mosquitto_conf() {
    local lan conf pconf retain
    lan=$(effective_sensor_lan)
    retain=$(effective_personal_retain)
    [[ -z $lan ]] || ensure_tls "$lan"
    conf=$(
        cat -- "$SCRIPT_DIR/mosquitto-street-gateway.conf"
        if [[ -n $lan ]]; then
            printf '\n# The sensor LAN (install.sh --sensor-lan %s): TLS only.\n' "$lan"
            printf 'listener %s %s\n' "$MQTTS_PORT" "$lan"
            tls_listener_lines
        fi
    )
    install_content "$MOSQ_CONF" 0644 <<<"$conf"
    ((WROTE == 0)) || CHANGED_MOSQUITTO=1
    pconf=$(
        cat -- "$SCRIPT_DIR/mosquitto-street-gateway-personal.conf"
        if [[ $retain == true ]]; then
            printf '\n# install.sh --personal-retain (OpenEVSE): retained messages accepted, in RAM only.\nretain_available true\n'
        fi
        printf '\nlistener %s 127.0.0.1\nmax_qos 0\n' "$PMQTT_PORT"
        if [[ -n $lan ]]; then
            printf '\n# The sensor LAN (install.sh --sensor-lan %s): TLS only.\n' "$lan"
            printf 'listener %s %s\nmax_qos 0\n' "$PMQTTS_PORT" "$lan"
            tls_listener_lines
        fi
    )
    install_content "$PMOSQ_CONF" 0644 <<<"$pconf"
    ((WROTE == 0)) || CHANGED_PMOSQ=1
}

# Refuse any broker config that listens in plain text beyond loopback: `listener PORT ADDR`
# (or no ADDR: every interface) not followed by a certfile before the next listener. Covers
# what this script wrote and whatever else sits in conf.d.
refuse_plain_lan_listeners() {
    local f bad
    for f in "$(r "$MOSQ_CONF")" "$(r "$PMOSQ_CONF")" "$(r /etc/mosquitto/conf.d)"/*.conf; do
        [[ -f $f ]] || continue
        bad=$(awk '
            function done_listener() {
                if (open && !tls && !(addr ~ /^127\./ || addr == "::1" || addr == "localhost"))
                    printf "%s:%d listener %s %s\n", FILENAME, line, port, (addr == "" ? "(all addresses)" : addr)
            }
            $1 == "listener" { done_listener(); open = 1; tls = 0; port = $2; addr = $3; line = FNR; next }
            $1 == "certfile" || $1 == "psk_hint" { tls = 1 }
            END { done_listener() }' "$f")
        if [[ -n $bad ]]; then
            die "plain-text MQTT listener beyond loopback (raw readings and device passwords would" \
                "cross the network in clear): ${bad//$'\n'/; }. Use --sensor-lan ADDR (TLS) instead"
        fi
    done
}

# add_mqtt_user PASSWD NAME PASSWORD: append unless NAME is already there (an existing entry
# is never replaced: the device out there uses that password). Sets ADDED=1 when it wrote.
ADDED=0
add_mqtt_user() {
    local out=$1 name=$2 pw=$3 hash
    out=$(r "$out")
    ADDED=0
    if [[ -f $out ]] && cut -d: -f1 -- "$out" | grep -qxF -- "$name"; then
        return 0
    fi
    hash=$(printf '%s\n' "$pw" | mosquitto_hash)
    (umask 027 && printf '%s:%s\n' "$name" "$hash" >>"$out")
    ADDED=1
    log "added MQTT user $name to ${1}"
}

# add_devices ACL PASSWD OTHER_ACL KIND SPEC...: users, passwords and ACL blocks for one broker.
add_devices() {
    local acl=$1 passwd=$2 other_acl=$3 kind=$4 spec name prefix pwfile pw existing out_acl port tls_port
    shift 4
    out_acl=$(r "$acl")
    port=$MQTT_PORT tls_port=$MQTTS_PORT
    [[ $kind == main ]] || port=$PMQTT_PORT tls_port=$PMQTTS_PORT
    for spec in "$@"; do
        name=${spec%%:*}
        prefix=$(device_prefix "$spec")
        check_against_installed "$name" "$prefix" "$other_acl" "$acl"
        pwfile=$DEVICE_SECRETS_DIR/$name.password
        if [[ -s $(r "$pwfile") ]]; then
            pw=$(head -n 1 -- "$(r "$pwfile")")
        else
            pw=$(new_password)
            (umask 077 && printf '%s\n' "$pw" >"$(r "$pwfile")")
            if live; then chown root:root -- "$(r "$pwfile")"; fi
            NEW_DEVICE_SECRETS+=("$name ($kind broker, port $port; $tls_port with TLS on the sensor LAN): password in $pwfile (sudo cat $pwfile)")
        fi
        add_mqtt_user "$passwd" "$name" "$pw"
        if ((ADDED)); then
            if [[ $kind == main ]]; then CHANGED_MOSQUITTO=1; else CHANGED_PMOSQ=1; fi
        fi
        if ! grep -qxF -- "user $name" "$out_acl"; then
            printf '\nuser %s\ntopic readwrite %s/#\n' "$name" "$prefix" >>"$out_acl"
            if [[ $kind == main ]]; then CHANGED_MOSQUITTO=1; else CHANGED_PMOSQ=1; fi
            log "ACL ($kind broker): $name may publish under $prefix/#"
        else
            existing=$(awk -v u="user $name" '$0 == u { on = 1; next }
                on && /^user / { exit } on && $1 == "topic" { print $NF; exit }' "$out_acl")
            if [[ $existing != "$prefix/#" ]]; then
                warn "device $name already has ACL '$existing' in $acl; left as is (edit it by hand)"
            fi
        fi
    done
}

install_mosquitto_users() {
    local out_acl out_pw out_pacl out_ppw pw f
    out_acl=$(r "$MOSQ_ACL")
    out_pw=$(r "$MOSQ_PASSWD")
    out_pacl=$(r "$PMOSQ_ACL")
    out_ppw=$(r "$PMOSQ_PASSWD")
    mkdir -p -- "$(dirname -- "$out_acl")"

    if [[ ! -e $out_acl ]]; then
        install -m 0640 -- "$SCRIPT_DIR/mosquitto.acl.template" "$out_acl"
        CHANGED_MOSQUITTO=1
        log "wrote $MOSQ_ACL"
    fi
    if [[ ! -e $out_pacl ]]; then
        install -m 0640 -- "$SCRIPT_DIR/mosquitto-personal.acl.template" "$out_pacl"
        CHANGED_PMOSQ=1
        log "wrote $PMOSQ_ACL"
    fi
    # The gateway logs in to both brokers with the same password.
    pw=$(env_value "$(r "$SECRETS")" LOCAL_MQTT_PASSWORD)
    add_mqtt_user "$MOSQ_PASSWD" "$MQTT_GATEWAY_USER" "$pw"
    ((ADDED == 0)) || CHANGED_MOSQUITTO=1
    add_mqtt_user "$PMOSQ_PASSWD" "$MQTT_GATEWAY_USER" "$pw"
    ((ADDED == 0)) || CHANGED_PMOSQ=1

    add_devices "$MOSQ_ACL" "$MOSQ_PASSWD" "$PMOSQ_ACL" main ${DEVICES[@]+"${DEVICES[@]}"}
    add_devices "$PMOSQ_ACL" "$PMOSQ_PASSWD" "$MOSQ_ACL" personal-data \
        ${PERSONAL_DEVICES[@]+"${PERSONAL_DEVICES[@]}"}

    for f in "$out_acl" "$out_pw" "$out_pacl" "$out_ppw"; do
        chmod 0640 -- "$f"
        # The brokers read these as user mosquitto (the main one drops root before a reload
        # re-reads them), and Mosquitto >= 2.0.16 warns, and plans to refuse, when they belong
        # to anyone else.
        if live; then chown mosquitto:mosquitto -- "$f"; fi
    done
}

# ---------------------------------------------------------------- Raspberry Pi UART

boot_dir() {
    local d
    # Bookworm moved the firmware partition to /boot/firmware; older images use /boot.
    for d in /boot/firmware /boot; do
        if [[ -f $(r "$d")/config.txt ]]; then
            printf '%s' "$d"
            return 0
        fi
    done
    return 1
}

enable_uart() {
    local dir cfg cmd arg args kept
    if ! dir=$(boot_dir); then
        warn "--enable-uart: no config.txt in /boot/firmware or /boot (not a Raspberry Pi?); skipped"
        return 0
    fi
    cfg=$(r "$dir")/config.txt
    cmd=$(r "$dir")/cmdline.txt
    if ! grep -qx 'enable_uart=1' -- "$cfg"; then
        # Under [all] at the end, so no [pi4]/[cm4] section above it can scope it away, and so
        # it wins over an earlier enable_uart=0.
        printf '\n# street-gateway: GPIO UART for serial sensors (install.sh --enable-uart)\n[all]\nenable_uart=1\n' >>"$cfg"
        CHANGED_BOOT=1
        log "enable_uart=1 added to $dir/config.txt"
    fi
    [[ -f $cmd ]] || return 0
    # cmdline.txt is one line of space-separated kernel arguments. The serial console (and the
    # login getty systemd starts on it) would otherwise talk over the sensor's line.
    read -r -a args <"$cmd" || true
    kept=()
    for arg in ${args[@]+"${args[@]}"}; do
        [[ $arg =~ ^console=(serial[01]|ttyAMA[0-9]+|ttyS[0-9]+)(,.*)?$ ]] || kept+=("$arg")
    done
    if ((${#kept[@]} != ${#args[@]})); then
        [[ -e $cmd.street-gateway.orig ]] || cp -p -- "$cmd" "$cmd.street-gateway.orig"
        printf '%s\n' "${kept[*]}" >"$cmd"
        CHANGED_BOOT=1
        log "serial console removed from $dir/cmdline.txt (was saved as cmdline.txt.street-gateway.orig)"
    fi
}

# ---------------------------------------------------------------- activation (live only)

activate() {
    if ((CHANGED_UDEV)); then
        udevadm control --reload
        udevadm trigger --subsystem-match=tty --action=add
    fi
    if ((CHANGED_JOURNALD)); then systemctl restart systemd-journald; fi
    systemctl daemon-reload
    systemctl enable --quiet mosquitto "$PMOSQ_SERVICE" "$SERVICE"
    if ((CHANGED_MOSQUITTO)); then
        systemctl restart mosquitto
    else
        systemctl start mosquitto
    fi
    if ((CHANGED_PMOSQ)); then
        systemctl restart "$PMOSQ_SERVICE"
    else
        systemctl start "$PMOSQ_SERVICE"
    fi
    if ! grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        warn "the memory cgroup controller is off, so MemoryMax= is not enforced; add" \
            "'cgroup_enable=memory' to cmdline.txt and reboot"
    fi
}

# Swap on the SD card (Raspberry Pi OS: dphys-swapfile's /var/swap) is where RAM goes under
# pressure. The unit forbids paging the gateway itself (MemorySwapMax=0), but only while the
# memory cgroup is on, and not the brokers' queues. zram swap stays in RAM and is fine.
# Reads $DESTDIR/proc/swaps in a --destdir tree, so the check can be tried without a Pi.
check_swap() {
    local swaps name type dev where
    swaps=$(r /proc/swaps)
    [[ -r $swaps ]] || return 0
    while read -r name type _; do
        [[ $name != Filename && $name != /dev/zram* && -n $name ]] || continue
        dev=$name
        if [[ $type == file ]]; then
            dev=$(findmnt -n -o SOURCE --target "$(r "$name")" 2>/dev/null || true)
        fi
        where="on disk (${dev:-unknown device})"
        [[ $dev != /dev/mmcblk* ]] || where="on the SD card ($dev)"
        warn "swap $name is $where: RAM holding raw personal readings could be written there." \
            "Turn it off: sudo dphys-swapfile swapoff && sudo systemctl disable --now dphys-swapfile" \
            "&& sudo dphys-swapfile uninstall (Raspberry Pi OS), or swapoff $name and remove it" \
            "from /etc/fstab; zram swap (apt install zram-tools) keeps it in RAM instead"
    done <"$swaps"
}

# Start (or restart) the service if the config passes; returns 1 when it does not.
check_and_start() {
    # Check as the service will run: its user and its secrets, so a file it cannot read or an
    # unset ${VAR} shows up here rather than in a restart loop.
    log "checking $CONFIG"
    if ! systemd-run --quiet --pipe --wait --collect \
        --property=User="$SERVICE_USER" --property=Group="$SERVICE_USER" \
        --property=EnvironmentFile=-"$SECRETS" \
        "$VENV/bin/street-gateway" check -c "$CONFIG"; then
        warn "$CONFIG does not pass the check yet; the service is enabled but not started." \
            "Fix the lines above, then: sudo systemctl restart $SERVICE"
        return 1
    fi
    # Also picks up a new unit file or a pip upgrade. The service drains on SIGTERM and its
    # outbox is durable, so this costs no data.
    systemctl restart "$SERVICE"
    log "$SERVICE (re)started"
}

next_steps() {
    local line
    cat >&2 <<EOF

street-gateway installed. Next (each line copies as it is):
  1. sudoedit $CONFIG       # sensors, sinks, location
     sudoedit $SECRETS      # INFLUX_TOKEN=…, LOCAL_MQTT_PASSWORD=…, CITY_MQTT_PASSWORD=…
  2. sudo street-gateway check -c $CONFIG --env-file $SECRETS
  3. sudo systemctl restart $SERVICE
  4. journalctl -u $SERVICE -f
  5. Status page, from your laptop: ssh -L 9108:127.0.0.1:9108 ${SUDO_USER:-pi}@$(hostname), then open http://127.0.0.1:9108/
EOF
    if ((${#NEW_DEVICE_SECRETS[@]})); then
        printf '\nNew MQTT device logins (configure them on the devices):\n' >&2
        for line in "${NEW_DEVICE_SECRETS[@]}"; do printf '  %s\n' "$line" >&2; done
    fi
    if ((CHANGED_BOOT)); then
        printf '\nUART settings changed: reboot for them to take effect (sudo reboot).\n' >&2
    fi
}

# ---------------------------------------------------------------- uninstall

uninstall() {
    local f
    if live; then
        systemctl disable --now "$SERVICE" "$PMOSQ_SERVICE" 2>/dev/null || true
    fi
    for f in "$UNIT" "$UDEV_RULES" "$JOURNALD_DROPIN" "$MOSQ_CONF" "$MOSQ_DROPIN" "$BIN_LINK" \
        "$PMOSQ_UNIT" "$PMOSQ_CONF"; do
        if [[ -e $(r "$f") || -L $(r "$f") ]]; then
            rm -f -- "$(r "$f")"
            log "removed $f"
        fi
    done
    rmdir --ignore-fail-on-non-empty -- "$(r "$(dirname -- "$MOSQ_DROPIN")")" 2>/dev/null || true
    if [[ -d $(r "$VENV") ]]; then
        rm -rf -- "$(r "$VENV")"
        log "removed $VENV"
    fi
    if ((PURGE)); then
        for f in "$ETC_DIR" "$STATE_DIR" "$MOSQ_PASSWD" "$MOSQ_ACL" "$PMOSQ_PASSWD" "$PMOSQ_ACL" \
            "$TLS_DIR"; do
            if [[ -e $(r "$f") ]]; then
                rm -rf -- "$(r "$f")"
                log "purged $f"
            fi
        done
    else
        log "kept $ETC_DIR, $STATE_DIR (outbox), the brokers' users, ACLs and TLS files; --purge deletes them"
    fi
    if live; then
        systemctl daemon-reload
        udevadm control --reload || true
        systemctl try-restart systemd-journald || true
        # Back to Debian's default broker: loopback only.
        systemctl try-restart mosquitto || true
        if getent passwd "$SERVICE_USER" >/dev/null; then
            userdel "$SERVICE_USER"
            log "removed user $SERVICE_USER"
        fi
    fi
    log "uninstalled (boot settings from --enable-uart are left in place)"
}

# ---------------------------------------------------------------- main

main() {
    parse_args "$@"
    need_root
    if ((UNINSTALL)); then
        uninstall
        return 0
    fi

    if live; then
        apt_install_missing
        create_user
    fi
    resolve_python

    install_dirs
    if live || ((WITH_VENV)); then
        install_venv
    else
        log "--destdir: venv and pip install skipped (add --with-venv to include them)"
    fi
    install_config
    install_secrets
    install_systemd_files
    install_mosquitto_conf
    install_mosquitto_users
    refuse_plain_lan_listeners
    ((ENABLE_UART == 0)) || enable_uart
    check_swap

    local rc=0
    if live; then
        activate
        check_and_start || rc=2
    fi
    next_steps
    # 2: installed, but the config needs editing before the service runs.
    return "$rc"
}

main "$@"
