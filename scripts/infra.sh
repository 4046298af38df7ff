#!/usr/bin/env bash
# Local test infrastructure for iotmon: REAL PostgreSQL 15, Redis 7, Mosquitto (MQTT) and
# Apache Kafka (KRaft, single node), all bound to 127.0.0.1 on non-default ports.
#
#   scripts/infra.sh up       install what is missing, start everything (idempotent), print env
#   scripts/infra.sh down     stop everything (idempotent); data is kept
#   scripts/infra.sh status   show each service up/down; exit 1 if any is down
#   scripts/infra.sh env      print the env lines written by the last `up`
#   scripts/infra.sh start|stop|restart|kill9 postgres|redis|kafka|mosquitto
#                             one service alone (fault injection in tests/reliability): `kill9`
#                             is SIGKILL (PostgreSQL: `pg_ctl stop -m immediate`, a crash);
#                             `start` after it recovers as after a power cut
#
# Environment knobs (all optional):
#   IOTMON_INFRA_DIR   state dir (data, logs, pids, configs)   default: <repo>/var/infra
#   IOTMON_PG_PORT     PostgreSQL port                          default: 54329
#   IOTMON_REDIS_PORT  Redis port                               default: 56379
#   IOTMON_MQTT_PORT   Mosquitto port                           default: 51883
#   IOTMON_KAFKA_PORT  Kafka broker port (controller = +1)      default: 59092
#   IOTMON_KAFKA_LIB   Kafka jar dir       default: ~/.cache/iotmon/kafka-lib-<sha of deploy/kafka/pom.xml>
#   IOTMON_INFRA_TIMEOUT  seconds to wait for each service      default: 120
#
# Use the services from a shell:   set -a; . var/infra/env; set +a
#
# Notes:
# * PostgreSQL refuses to run as root, so when run as root it runs as the `postgres` OS user.
#   Its data dir is <state>/pg when that path is traversable by `postgres`; otherwise (e.g. the
#   repo lives under /root) it goes to /var/tmp/iotmon-infra-<sha of state dir path>/pg and
#   <state>/pg-location records where. Its log is symlinked to <state>/logs/postgres.log.
# * Debian's own service instances (if the packages' init scripts start any) are irrelevant:
#   we run our own instances with our own configs on our own ports, without systemd.
# * Removing <state> (e.g. `rm -rf var/infra`, after `down`) resets all data.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"
export LC_ALL=C
umask 022

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(dirname "$SCRIPT_DIR")"

STATE="${IOTMON_INFRA_DIR:-$REPO/var/infra}"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd -P)"

PG_PORT="${IOTMON_PG_PORT:-54329}"
REDIS_PORT="${IOTMON_REDIS_PORT:-56379}"
MQTT_PORT="${IOTMON_MQTT_PORT:-51883}"
KAFKA_PORT="${IOTMON_KAFKA_PORT:-59092}"
KAFKA_CTRL_PORT="$((KAFKA_PORT + 1))"
TIMEOUT="${IOTMON_INFRA_TIMEOUT:-120}"
HOST=127.0.0.1

PG_BIN=/usr/lib/postgresql/15/bin
LOGS="$STATE/logs"
RUN="$STATE/run"
ENV_FILE="$STATE/env"

KAFKA_POM="$REPO/deploy/kafka/pom.xml"
KAFKA_LOG4J="$REPO/deploy/kafka/log4j.properties"
KAFKA_DIR="$STATE/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_LOGDIR="$LOGS/kafka"
KAFKA_OUT="$LOGS/kafka.out"
KAFKA_PID="$RUN/kafka.pid"

REDIS_CONF="$STATE/redis/redis.conf"
REDIS_PID="$RUN/redis.pid"
REDIS_LOG="$LOGS/redis.log"

MQTT_CONF="$STATE/mosquitto/mosquitto.conf"
MQTT_PID="$RUN/mosquitto.pid"
MQTT_LOG="$LOGS/mosquitto.log"
# Anonymous clients are refused: Mosquitto's dynamic security plugin holds the clients (the
# admin, the bridge, one per provisioned device) in MQTT_DYNSEC; their passwords in MQTT_SECRETS.
MQTT_DYNSEC="$STATE/mosquitto/dynamic-security.json"
MQTT_SECRETS="$STATE/mosquitto/credentials"
MQTT_CONF_SHA="$RUN/mosquitto.conf.sha"
MQTT_ADMIN_USER=_iotmon_admin
MQTT_BRIDGE_USER=_iotmon_bridge

# ----------------------------------------------------------------------------- helpers
log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

# "name: starting on host:port ..." without newline, finished by ok_since/fail_with
begin() { printf '[infra] %s ' "$*" >&2; T0="$(date +%s.%N)"; }
ok_since() { printf 'ok (%ss)\n' "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')" >&2; }
fail_with() { # fail_with LOGFILE MESSAGE
    local f="$1"; shift
    printf 'FAILED\n' >&2
    if [[ -n "$f" && -e "$f" ]]; then
        printf '[infra] ---- last 40 lines of %s ----\n' "$f" >&2
        tail -n 40 "$f" >&2 || true
        printf '[infra] ----\n' >&2
    fi
    die "$* (log: ${f:-none})"
}

# port_open PORT -> 0 if something accepts TCP connections on 127.0.0.1:PORT
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# pid_alive PIDFILE PATTERN -> 0 if the pid in PIDFILE is running and its cmdline matches PATTERN
pid_alive() {
    local pidfile="$1" pattern="$2" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(head -n1 "$pidfile" | tr -dc '0-9')"
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmd" == *"$pattern"* ]]
}
pid_of() { head -n1 "$1" 2>/dev/null | tr -dc '0-9'; }

# wait_pid_gone PID SECONDS -> 0 if the process exited in time
wait_pid_gone() {
    local pid="$1" n=$(( $2 * 10 ))
    while (( n-- > 0 )); do
        [[ -d "/proc/$pid" ]] || return 0
        # a zombie child of ours counts as gone
        [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
        sleep 0.1
    done
    return 1
}

# stop_pid NAME PIDFILE PATTERN SECONDS: SIGTERM, wait, then SIGKILL
stop_pid() {
    local name="$1" pidfile="$2" pattern="$3" secs="$4" pid
    if ! pid_alive "$pidfile" "$pattern"; then
        rm -f "$pidfile"
        log "$name: not running"
        return 0
    fi
    pid="$(pid_of "$pidfile")"
    begin "$name: stopping (pid $pid) ..."
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_pid_gone "$pid" "$secs"; then
        printf '(no exit after %ss, SIGKILL) ' "$secs" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_pid_gone "$pid" 10 || true
    fi
    rm -f "$pidfile"
    ok_since
}

# refuse to start when a foreign process already holds our port
ensure_port_free() { # NAME PORT LOG
    if port_open "$2"; then
        local who
        who="$(ss -Hltnp "sport = :$2" 2>/dev/null | head -n1 || true)"
        die "$1: port $HOST:$2 is already in use by another process (${who:-unknown}); stop it or set a different port (log: $3)"
    fi
}

as_root() { [[ "$(id -u)" == 0 ]]; }

# ----------------------------------------------------------------------------- install
POLICY_RC_CREATED=0
cleanup_policy_rc() { if (( POLICY_RC_CREATED )); then rm -f /usr/sbin/policy-rc.d; fi; }

ensure_packages() {
    local pkgs=()
    [[ -x "$PG_BIN/postgres" && -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]] || pkgs+=(postgresql-15)
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-server)
    command -v mosquitto >/dev/null 2>&1 || pkgs+=(mosquitto)
    # promtool and a Prometheus for the rule and dashboard checks (tests/deploy)
    command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || pkgs+=(prometheus)
    (( ${#pkgs[@]} )) || return 0

    as_root || die "missing packages: ${pkgs[*]}; install them (as root: apt-get install -y ${pkgs[*]}) and rerun"
    command -v apt-get >/dev/null 2>&1 || die "missing packages: ${pkgs[*]} and no apt-get to install them"
    mkdir -p "$LOGS"
    local alog="$LOGS/apt.log"
    # Never let package scripts start Debian's own instances (no systemd here anyway).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
        trap cleanup_policy_rc EXIT
    fi
    begin "packages: installing ${pkgs[*]} ..."
    export DEBIAN_FRONTEND=noninteractive
    local aopt=(-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    apt-get "${aopt[@]}" update >"$alog" 2>&1 </dev/null \
        || fail_with "$alog" "apt-get update failed"
    apt-get "${aopt[@]}" install -y --no-install-recommends "${pkgs[@]}" >>"$alog" 2>&1 </dev/null \
        || fail_with "$alog" "apt-get install ${pkgs[*]} failed"
    ok_since
    cleanup_policy_rc; POLICY_RC_CREATED=0
    [[ -x "$PG_BIN/postgres" ]] || die "postgresql-15 installed but $PG_BIN/postgres is missing (log: $alog)"
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after install (log: $alog)"
    command -v mosquitto >/dev/null 2>&1 || die "mosquitto still missing after install (log: $alog)"
}

ensure_java_mvn() {
    command -v java >/dev/null 2>&1 || die "java not found: Java 17+ is required for Kafka (Debian: apt-get install -y openjdk-17-jre-headless)"
    local v
    v="$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
    v="${v%%.*}"; [[ "$v" == 1 ]] && v=8
    [[ "$v" =~ ^[0-9]+$ ]] && (( v >= 17 )) || die "Java 17+ is required for Kafka, found: $(java -version 2>&1 | head -n1)"
}
ensure_mvn() {
    command -v mvn >/dev/null 2>&1 || die "mvn not found: Maven is required once to fetch the Kafka jars (Debian: apt-get install -y maven), or point IOTMON_KAFKA_LIB at a dir holding them"
}

# ----------------------------------------------------------------------------- postgres
# PG runs as `postgres` when we are root; its base dir must be reachable by that user.
PG_USER=""
# (cd / first: the caller's cwd may not be readable by postgres, e.g. a repo under /root)
pg_run() { if [[ -n "$PG_USER" ]]; then (cd / && runuser -u "$PG_USER" -- "$@"); else "$@"; fi; }

pg_locate() {
    if as_root; then
        id postgres >/dev/null 2>&1 || die "postgres: OS user 'postgres' does not exist (is postgresql-15 installed?)"
        PG_USER=postgres
    fi
    if [[ -s "$STATE/pg-location" ]]; then
        PG_BASE="$(cat "$STATE/pg-location")"
    elif [[ -z "$PG_USER" ]] || runuser -u "$PG_USER" -- test -x "$STATE" -a -r "$STATE"; then
        PG_BASE="$STATE/pg"
    else
        PG_BASE="/var/tmp/iotmon-infra-$(printf '%s' "$STATE" | sha256sum | cut -c1-12)/pg"
    fi
    PG_DATA="$PG_BASE/data"
    PG_SOCK="$PG_BASE/run"
    PG_LOG="$PG_BASE/postgres.log"
}

pg_running() { [[ -f "$PG_DATA/PG_VERSION" ]] && pg_run "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; }
pg_ready() { "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1; }
pg_psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres "$@"; }

pg_write_conf() {
    pg_run tee "$PG_DATA/iotmon.conf" >/dev/null <<EOF
# Written by scripts/infra.sh on every 'up' (edit the script, not this file).
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 200
shared_buffers = 256MB
# durability stays on: the tests check it
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = minimal
max_wal_senders = 0
logging_collector = off
log_min_messages = warning
log_connections = off
log_timezone = 'UTC'
timezone = 'UTC'
EOF
}

pg_up() {
    pg_locate
    if [[ "$PG_BASE" != "$STATE/pg" ]]; then
        printf '%s\n' "$PG_BASE" >"$STATE/pg-location"
    fi
    mkdir -p "$PG_BASE" "$PG_SOCK"
    if [[ -n "$PG_USER" ]]; then chown "$PG_USER": "$PG_BASE" "$PG_SOCK"; fi
    ln -sfn "$PG_LOG" "$LOGS/postgres.log"

    if pg_running; then
        if pg_ready; then
            log "postgres: already running on $HOST:$PG_PORT (data $PG_DATA)"
            pg_bootstrap
            return 0
        fi
        log "postgres: running but not answering on $HOST:$PG_PORT, restarting (config/port change?)"
        pg_run "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >>"$PG_LOG" 2>&1 || true
    fi

    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
        begin "postgres: initdb in $PG_DATA ..."
        rm -rf "$PG_DATA"
        pg_run "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --no-locale \
            --auth-local=trust --auth-host=scram-sha-256 >"$PG_BASE/initdb.log" 2>&1 \
            || fail_with "$PG_BASE/initdb.log" "postgres: initdb failed"
        printf "\ninclude_if_exists = 'iotmon.conf'\n" | pg_run tee -a "$PG_DATA/postgresql.conf" >/dev/null
        ok_since
    fi
    pg_write_conf

    ensure_port_free postgres "$PG_PORT" "$PG_LOG"
    begin "postgres: starting on $HOST:$PG_PORT ..."
    # pg_ctl detaches the postmaster (setsid); a stale postmaster.pid after a crash is handled by PG.
    if ! pg_run "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" -s >"$LOGS/pg_ctl.log" 2>&1 9>&-; then
        cat "$LOGS/pg_ctl.log" >&2 || true
        fail_with "$PG_LOG" "postgres: could not start on $HOST:$PG_PORT"
    fi
    local n=$(( TIMEOUT * 5 ))
    until pg_ready; do
        (( n-- > 0 )) || fail_with "$PG_LOG" "postgres: pg_isready did not succeed within ${TIMEOUT}s"
        sleep 0.2
    done
    ok_since
    pg_bootstrap
}

pg_bootstrap() {
    # idempotent: role + database (also repairs a first run that died half-way)
    pg_psql -d postgres >/dev/null 2>>"$PG_LOG" <<'EOF' || fail_with "$PG_LOG" "postgres: creating role/database iotmon failed"
SELECT 'CREATE ROLE iotmon' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'iotmon')
\gexec
ALTER ROLE iotmon WITH LOGIN SUPERUSER PASSWORD 'iotmon';
SELECT 'CREATE DATABASE iotmon OWNER iotmon' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'iotmon')
\gexec
EOF
}

pg_down() {
    pg_locate
    if ! pg_running; then log "postgres: not running"; return 0; fi
    begin "postgres: stopping ..."
    pg_run "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s >>"$PG_LOG" 2>&1 \
        || fail_with "$PG_LOG" "postgres: pg_ctl stop failed"
    ok_since
}

# ----------------------------------------------------------------------------- redis
redis_ping() { [[ "$(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

redis_up() {
    mkdir -p "$STATE/redis"
    cat >"$REDIS_CONF" <<EOF
# Written by scripts/infra.sh on every 'up'.
bind $HOST
port $REDIS_PORT
protected-mode no
daemonize yes
supervised no
pidfile $REDIS_PID
logfile $REDIS_LOG
loglevel notice
dir $STATE/redis
save ""
appendonly no
databases 16
# As in deploy/ (compose, Helm): evict only keys with a TTL; see deploy/README.md, "Redis memory".
maxmemory 512mb
maxmemory-policy volatile-lru
EOF
    if pid_alive "$REDIS_PID" redis-server; then
        if redis_ping; then
            # a server started before these settings were in redis.conf takes them now
            timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" config set maxmemory 512mb >/dev/null 2>&1 || true
            timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" config set maxmemory-policy volatile-lru >/dev/null 2>&1 || true
            log "redis: already running on $HOST:$REDIS_PORT"; return 0
        fi
        log "redis: running but not answering on $HOST:$REDIS_PORT, restarting"
        stop_pid redis "$REDIS_PID" redis-server 20
    fi
    rm -f "$REDIS_PID"
    ensure_port_free redis "$REDIS_PORT" "$REDIS_LOG"
    begin "redis: starting on $HOST:$REDIS_PORT ..."
    redis-server "$REDIS_CONF" </dev/null >>"$REDIS_LOG" 2>&1 9>&- \
        || fail_with "$REDIS_LOG" "redis: redis-server failed to start"
    local n=$(( TIMEOUT * 5 ))
    until redis_ping; do
        (( n-- > 0 )) || fail_with "$REDIS_LOG" "redis: no PONG within ${TIMEOUT}s"
        sleep 0.2
    done
    ok_since
}

redis_down() {
    if ! pid_alive "$REDIS_PID" redis-server; then rm -f "$REDIS_PID"; log "redis: not running"; return 0; fi
    local pid; pid="$(pid_of "$REDIS_PID")"
    begin "redis: stopping (pid $pid) ..."
    timeout 10 redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    if ! wait_pid_gone "$pid" 15; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_pid_gone "$pid" 10 || { kill -KILL "$pid" 2>/dev/null || true; wait_pid_gone "$pid" 5 || true; }
    fi
    rm -f "$REDIS_PID"
    ok_since
}

# ----------------------------------------------------------------------------- mosquitto
mqtt_plugin() {
    local f
    for f in /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so /usr/lib/*/mosquitto_dynamic_security.so \
        /usr/lib/mosquitto_dynamic_security.so /usr/local/lib/mosquitto_dynamic_security.so; do
        [[ -f "$f" ]] && { printf '%s\n' "$f"; return 0; }
    done
    f="$(dpkg -L mosquitto 2>/dev/null | grep -m1 'mosquitto_dynamic_security\.so$' || true)"
    [[ -n "$f" && -f "$f" ]] || die "mosquitto: the dynamic security plugin (mosquitto_dynamic_security.so) is missing; Mosquitto 2.0+ ships it"
    printf '%s\n' "$f"
}

mqtt_random() { openssl rand -base64 18 | tr '+/' '-_'; }

# dynsec's password entry: base64 of PBKDF2-HMAC-SHA512 (101 iterations) of PASSWORD and SALT
mqtt_dynsec_hash() { # PASSWORD SALT_B64
    openssl kdf -keylen 64 -kdfopt digest:SHA512 -kdfopt "pass:$1" \
        -kdfopt "hexsalt:$(printf '%s' "$2" | base64 -d | od -An -v -tx1 | tr -d ' \n')" \
        -kdfopt iter:101 -binary PBKDF2 | base64 -w0
}

mqtt_dynsec_client() { # USER PASSWORD ROLE
    local salt; salt="$(openssl rand -base64 12)"
    printf '{"username": "%s", "password": "%s", "salt": "%s", "iterations": 101, "roles": [{"rolename": "%s"}]}' \
        "$1" "$(mqtt_dynsec_hash "$2" "$salt")" "$salt" "$3"
}

# The admin and bridge passwords (MQTT_SECRETS) and the plugin's initial state (MQTT_DYNSEC)
# are made together, once; device clients are added later through the plugin's control topic.
# Returns 0 when it (re)created them: a running broker must then restart to load them.
mqtt_init_security() {
    if [[ -s "$MQTT_SECRETS" && -s "$MQTT_DYNSEC" ]]; then
        # shellcheck disable=SC1090
        . "$MQTT_SECRETS"
        [[ -n "${MQTT_ADMIN_PASSWORD:-}" && -n "${MQTT_BRIDGE_PASSWORD:-}" ]] && return 1
    fi
    command -v openssl >/dev/null 2>&1 || die "mosquitto: openssl is needed to create the broker's credentials"
    log "mosquitto: creating the admin and bridge credentials ($MQTT_SECRETS)"
    MQTT_ADMIN_PASSWORD="$(mqtt_random)"
    MQTT_BRIDGE_PASSWORD="$(mqtt_random)"
    local admin bridge
    admin="$(mqtt_dynsec_client "$MQTT_ADMIN_USER" "$MQTT_ADMIN_PASSWORD" admin)"
    bridge="$(mqtt_dynsec_client "$MQTT_BRIDGE_USER" "$MQTT_BRIDGE_PASSWORD" bridge)"
    ( umask 077
      printf 'MQTT_ADMIN_PASSWORD=%s\nMQTT_BRIDGE_PASSWORD=%s\n' "$MQTT_ADMIN_PASSWORD" "$MQTT_BRIDGE_PASSWORD" >"$MQTT_SECRETS.tmp"
      cat >"$MQTT_DYNSEC.tmp" <<EOF
{
  "defaultACLAccess": {"publishClientSend": false, "publishClientReceive": true, "subscribe": false, "unsubscribe": true},
  "clients": [
    $admin,
    $bridge
  ],
  "groups": [],
  "roles": [
    {"rolename": "admin", "textdescription": "administers the dynamic security plugin (device credentials)", "acls": [
      {"acltype": "publishClientSend", "topic": "\$CONTROL/dynamic-security/#", "allow": true},
      {"acltype": "publishClientReceive", "topic": "\$CONTROL/dynamic-security/#", "allow": true},
      {"acltype": "subscribePattern", "topic": "\$CONTROL/dynamic-security/#", "allow": true},
      {"acltype": "publishClientReceive", "topic": "\$SYS/#", "allow": true},
      {"acltype": "subscribePattern", "topic": "\$SYS/#", "allow": true}]},
    {"rolename": "bridge", "textdescription": "reads every device topic, shared subscriptions included", "acls": [
      {"acltype": "subscribePattern", "topic": "#", "allow": true},
      {"acltype": "subscribePattern", "topic": "\$share/#", "allow": true},
      {"acltype": "publishClientReceive", "topic": "#", "allow": true},
      {"acltype": "unsubscribePattern", "topic": "#", "allow": true}]}
  ]
}
EOF
    )
    mv "$MQTT_DYNSEC.tmp" "$MQTT_DYNSEC"
    mv "$MQTT_SECRETS.tmp" "$MQTT_SECRETS"
    return 0
}

mqtt_up() {
    mkdir -p "$STATE/mosquitto"
    local fresh=0
    if mqtt_init_security; then fresh=1; fi
    cat >"$MQTT_CONF" <<EOF
# Written by scripts/infra.sh on every 'up'.
per_listener_settings false
listener $MQTT_PORT $HOST
allow_anonymous false
plugin $(mqtt_plugin)
plugin_opt_config_file $MQTT_DYNSEC
persistence false
# QoS 1 messages queued for a client (the bridge) that is slow or away: Mosquitto's default of
# 1000 drops the rest ("Outgoing messages are being dropped"), a loss behind the bridge's back.
max_queued_messages 2000000
pid_file $MQTT_PID
log_dest file $MQTT_LOG
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp_format %Y-%m-%dT%H:%M:%S
EOF
    # As root, keep running as root (otherwise mosquitto switches to user 'mosquitto',
    # which may not be able to write the log in the state dir).
    as_root && printf 'user root\n' >>"$MQTT_CONF"
    local sha; sha="$(sha256sum "$MQTT_CONF" | cut -c1-16)"

    if pid_alive "$MQTT_PID" mosquitto; then
        if (( fresh )) || [[ "$(cat "$MQTT_CONF_SHA" 2>/dev/null)" != "$sha" ]]; then
            # e.g. a state dir from before credentials: the running broker still admits anyone
            log "mosquitto: configuration or credentials changed, restarting"
            stop_pid mosquitto "$MQTT_PID" mosquitto 20
        elif port_open "$MQTT_PORT"; then
            log "mosquitto: already running on $HOST:$MQTT_PORT"; return 0
        else
            log "mosquitto: running but not listening on $HOST:$MQTT_PORT, restarting"
            stop_pid mosquitto "$MQTT_PID" mosquitto 20
        fi
    fi
    rm -f "$MQTT_PID"
    ensure_port_free mosquitto "$MQTT_PORT" "$MQTT_LOG"
    begin "mosquitto: starting on $HOST:$MQTT_PORT ..."
    touch "$MQTT_LOG"
    mosquitto -c "$MQTT_CONF" -d </dev/null >>"$MQTT_LOG" 2>&1 9>&- \
        || fail_with "$MQTT_LOG" "mosquitto: failed to start"
    local n=$(( TIMEOUT * 5 ))
    until port_open "$MQTT_PORT" && pid_alive "$MQTT_PID" mosquitto; do
        (( n-- > 0 )) || fail_with "$MQTT_LOG" "mosquitto: not accepting connections on $HOST:$MQTT_PORT within ${TIMEOUT}s"
        sleep 0.2
    done
    printf '%s\n' "$sha" >"$MQTT_CONF_SHA"
    ok_since
}

mqtt_down() { stop_pid mosquitto "$MQTT_PID" mosquitto 15; }

# ----------------------------------------------------------------------------- kafka
kafka_lib_dir() {
    [[ -f "$KAFKA_POM" ]] || die "kafka: $KAFKA_POM is missing"
    local sha; sha="$(sha256sum "$KAFKA_POM" | cut -c1-16)"
    if [[ -n "${IOTMON_KAFKA_LIB:-}" ]]; then
        KAFKA_LIB="$IOTMON_KAFKA_LIB"
    elif [[ -n "${HOME:-}" ]]; then
        KAFKA_LIB="$HOME/.cache/iotmon/kafka-lib-$sha"
    else
        KAFKA_LIB="$STATE/kafka-lib-$sha"
    fi
}

kafka_fetch() {
    kafka_lib_dir
    if [[ -f "$KAFKA_LIB/.complete" ]] && compgen -G "$KAFKA_LIB/kafka_2.13-*.jar" >/dev/null; then
        return 0
    fi
    ensure_mvn
    local flog="$LOGS/kafka-fetch.log" tmp="$KAFKA_LIB.tmp.$$"
    begin "kafka: fetching jars into $KAFKA_LIB ..."
    mkdir -p "$(dirname "$KAFKA_LIB")"
    rm -rf "$tmp"
    mvn -B -q -f "$KAFKA_POM" org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime </dev/null >"$flog" 2>&1 \
        || { rm -rf "$tmp"; fail_with "$flog" "kafka: fetching jars with mvn failed"; }
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null \
        || { rm -rf "$tmp"; fail_with "$flog" "kafka: mvn ran but no kafka_2.13 jar was copied"; }
    touch "$tmp/.complete"
    rm -rf "$KAFKA_LIB"
    mv "$tmp" "$KAFKA_LIB"
    ok_since
}

kafka_java() { # kafka_java [jvm opts...] MAINCLASS args...
    # tools log to their own dir so server.log only holds the broker's lines
    java -Dlog4j.configuration="file:$KAFKA_LOG4J" -Dkafka.logs.dir="$LOGS/kafka-tools" \
        -cp "$KAFKA_LIB/*" "$@"
}

kafka_write_props() {
    mkdir -p "$KAFKA_DIR" "$KAFKA_DATA" "$KAFKA_LOGDIR"
    cat >"$KAFKA_PROPS" <<EOF
# Written by scripts/infra.sh on every 'up'. Single node, broker + controller, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CTRL_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CTRL_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.retention.hours=24
EOF
}

kafka_up() {
    ensure_java_mvn
    kafka_fetch
    [[ -f "$KAFKA_LOG4J" ]] || die "kafka: $KAFKA_LOG4J is missing"
    kafka_write_props

    if pid_alive "$KAFKA_PID" kafka.Kafka; then
        if port_open "$KAFKA_PORT"; then log "kafka: already running on $HOST:$KAFKA_PORT"; return 0; fi
        log "kafka: running but not listening on $HOST:$KAFKA_PORT, restarting"
        stop_pid kafka "$KAFKA_PID" kafka.Kafka 60
    fi
    rm -f "$KAFKA_PID"

    if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
        local id flog="$LOGS/kafka-format.log"
        begin "kafka: formatting $KAFKA_DATA ..."
        if [[ -s "$KAFKA_DIR/cluster.id" ]]; then
            id="$(cat "$KAFKA_DIR/cluster.id")"
        else
            id="$(kafka_java kafka.tools.StorageTool random-uuid 2>"$flog" | grep -E '^[A-Za-z0-9_-]{22}$' | tail -n1)" \
                || fail_with "$flog" "kafka: StorageTool random-uuid failed"
            [[ -n "$id" ]] || fail_with "$flog" "kafka: StorageTool random-uuid printed nothing"
            printf '%s\n' "$id" >"$KAFKA_DIR/cluster.id"
        fi
        kafka_java kafka.tools.StorageTool format -t "$id" -c "$KAFKA_PROPS" --ignore-formatted \
            </dev/null >>"$flog" 2>&1 || fail_with "$flog" "kafka: StorageTool format failed"
        ok_since
    fi

    ensure_port_free kafka "$KAFKA_PORT" "$KAFKA_OUT"
    ensure_port_free kafka-controller "$KAFKA_CTRL_PORT" "$KAFKA_OUT"
    local slog="$KAFKA_LOGDIR/server.log" off=0
    [[ -f "$slog" ]] && off="$(stat -c %s "$slog")"
    begin "kafka: starting on $HOST:$KAFKA_PORT (controller $KAFKA_CTRL_PORT) ..."
    : >"$KAFKA_OUT"
    # setsid: own session, so it survives the caller's process group being killed.
    setsid -f bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PID" \
        java -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true -Dlog4j.configuration="file:$KAFKA_LOG4J" -Dkafka.logs.dir="$KAFKA_LOGDIR" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_PROPS" </dev/null >>"$KAFKA_OUT" 2>&1 9>&-
    local n=$(( TIMEOUT * 5 )) started=0
    while :; do
        if [[ -f "$slog" ]]; then
            local size; size="$(stat -c %s "$slog")"
            (( size < off )) && off=0   # log rotated
            # no `grep -q` here: with pipefail, tail's SIGPIPE would turn a match into a failure
            if tail -c +"$((off + 1))" "$slog" | grep -e 'Kafka Server started' -e 'started (kafka.server.KafkaRaftServer)' >/dev/null; then
                started=1
            fi
        fi
        if (( started )) && port_open "$KAFKA_PORT"; then break; fi
        if [[ -s "$KAFKA_PID" ]] && ! pid_alive "$KAFKA_PID" kafka.Kafka; then
            [[ -s "$KAFKA_OUT" ]] && tail -n 20 "$KAFKA_OUT" >&2
            fail_with "$slog" "kafka: broker process exited during startup (also see $KAFKA_OUT)"
        fi
        (( n-- > 0 )) || { [[ -s "$KAFKA_OUT" ]] && tail -n 20 "$KAFKA_OUT" >&2;
            # don't leave a half-started broker behind: a later `up` must not mistake it for ready
            kill -KILL "$(pid_of "$KAFKA_PID")" 2>/dev/null || true; rm -f "$KAFKA_PID"
            fail_with "$slog" "kafka: not ready on $HOST:$KAFKA_PORT within ${TIMEOUT}s (also see $KAFKA_OUT; pid file $KAFKA_PID)"; }
        sleep 0.2
    done
    ok_since
}

kafka_down() { stop_pid kafka "$KAFKA_PID" kafka.Kafka 60; }

# ----------------------------------------------------------------------------- commands
env_lines() {
    cat <<EOF
IOTMON_DATABASE_URL=postgresql://iotmon:iotmon@$HOST:$PG_PORT/iotmon
IOTMON_REDIS_URL=redis://$HOST:$REDIS_PORT/0
IOTMON_KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT
IOTMON_MQTT_URL=mqtt://$MQTT_BRIDGE_USER:$MQTT_BRIDGE_PASSWORD@$HOST:$MQTT_PORT
IOTMON_MQTT_ADMIN_URL=mqtt://$MQTT_ADMIN_USER:$MQTT_ADMIN_PASSWORD@$HOST:$MQTT_PORT
EOF
}

# Serialise concurrent up/down on one state dir. Daemons are started with fd 9 closed
# (`9>&-`) so they never inherit, and keep holding, this lock.
lock() {
    local lf="$STATE/.infra.lock"
    exec 9>"$lf"
    if ! flock -n 9; then
        log "waiting for another scripts/infra.sh on $STATE (lock $lf) ..."
        flock -w 300 9 || die "another scripts/infra.sh still holds $lf after 300s (see: fuser -v $lf)"
    fi
}

cmd_up() {
    lock
    mkdir -p "$LOGS" "$RUN"
    ensure_packages
    log "state dir: $STATE"
    pg_up
    redis_up
    mqtt_up
    kafka_up
    env_lines >"$ENV_FILE.tmp" && mv "$ENV_FILE.tmp" "$ENV_FILE"
    log "all services up; env written to $ENV_FILE (load with: set -a; . $ENV_FILE; set +a)"
    cat "$ENV_FILE"
}

cmd_down() {
    lock
    mkdir -p "$LOGS" "$RUN"
    # reverse order; each step is a no-op when the service is not running
    kafka_down
    mqtt_down
    redis_down
    if [[ -x "$PG_BIN/pg_ctl" ]]; then pg_down; else log "postgres: not installed"; fi
}

cmd_status() {
    local bad=0 pgok=0
    if [[ -x "$PG_BIN/pg_isready" ]]; then
        pg_locate
        pg_ready && pg_running && pgok=1
    fi
    _st() { # NAME OK ADDR EXTRA
        if [[ "$2" == 1 ]]; then printf '%-10s up     %-22s %s\n' "$1" "$3" "$4"
        else printf '%-10s down   %-22s %s\n' "$1" "$3" "$4"; bad=1; fi
    }
    _st postgres "$pgok" "$HOST:$PG_PORT" "${PG_DATA:+data $PG_DATA}"
    local ok=0; pid_alive "$REDIS_PID" redis-server && redis_ping && ok=1
    _st redis "$ok" "$HOST:$REDIS_PORT" "log $REDIS_LOG"
    ok=0; pid_alive "$MQTT_PID" mosquitto && port_open "$MQTT_PORT" && ok=1
    _st mosquitto "$ok" "$HOST:$MQTT_PORT" "log $MQTT_LOG"
    ok=0; pid_alive "$KAFKA_PID" kafka.Kafka && port_open "$KAFKA_PORT" && ok=1
    _st kafka "$ok" "$HOST:$KAFKA_PORT" "log $KAFKA_LOGDIR/server.log"
    return "$bad"
}

# One service alone: start|stop|restart|kill9 SERVICE (tests/reliability injects faults).
kill9_pid() { # NAME PIDFILE PATTERN
    if ! pid_alive "$2" "$3"; then rm -f "$2"; log "$1: not running"; return 0; fi
    local pid; pid="$(pid_of "$2")"
    begin "$1: SIGKILL (pid $pid) ..."
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid_gone "$pid" 30 || fail_with "" "$1: pid $pid still there 30s after SIGKILL"
    rm -f "$2"
    ok_since
}

cmd_service() { # ACTION SERVICE
    local action="$1" svc="${2:-}"
    case "$svc" in postgres|redis|kafka|mosquitto) ;; *) usage >&2; exit 2 ;; esac
    lock
    mkdir -p "$LOGS" "$RUN"
    if [[ "$action" == stop || "$action" == restart ]]; then
        case "$svc" in
            postgres) pg_down ;;
            redis) redis_down ;;
            kafka) kafka_down ;;
            mosquitto) mqtt_down ;;
        esac
    fi
    if [[ "$action" == kill9 ]]; then
        case "$svc" in
            postgres)
                pg_locate
                if pg_running; then
                    begin "postgres: crash (pg_ctl stop -m immediate) ..."
                    pg_run "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 60 -s >>"$PG_LOG" 2>&1 \
                        || fail_with "$PG_LOG" "postgres: pg_ctl stop -m immediate failed"
                    ok_since
                else
                    log "postgres: not running"
                fi ;;
            redis) kill9_pid redis "$REDIS_PID" redis-server ;;
            kafka) kill9_pid kafka "$KAFKA_PID" kafka.Kafka ;;
            mosquitto) kill9_pid mosquitto "$MQTT_PID" mosquitto ;;
        esac
    fi
    if [[ "$action" == start || "$action" == restart ]]; then
        case "$svc" in
            postgres) pg_up ;;
            redis) redis_up ;;
            kafka) ensure_java_mvn; kafka_up ;;
            mosquitto) mqtt_up ;;
        esac
    fi
}

cmd_env() {
    [[ -s "$ENV_FILE" ]] || die "no $ENV_FILE yet: run 'scripts/infra.sh up' first"
    cat "$ENV_FILE"
}

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    start|stop|restart|kill9) cmd_service "$1" "${2:-}" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
