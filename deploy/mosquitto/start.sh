#!/bin/sh
# Mosquitto for deploy/docker-compose.yml, refusing anonymous clients: the dynamic security
# plugin holds the clients (iotmon's admin, the bridge, one per provisioned device) in
# $DATA/dynamic-security.json, changed at run time through $CONTROL/dynamic-security/v1.
#
# First start: random admin and bridge passwords (or IOTMON_MQTT_ADMIN_PASSWORD /
# IOTMON_MQTT_BRIDGE_PASSWORD when set) are made and kept in the data volume; the URLs the iotmon
# roles need are written to $SECRETS/mqtt.env (a volume the web and bridge containers mount
# read-only). Later starts reuse them.
set -eu

CONF="${MQTT_CONF:-/mosquitto/config/mosquitto.conf}"
DATA="${MQTT_DATA:-/mosquitto/data}"
SECRETS="${MQTT_SECRETS:-/mosquitto/secrets}"
HOST="${MQTT_SERVICE_HOST:-mosquitto}"
PORT="${MQTT_PORT:-1883}"
DYNSEC="$DATA/dynamic-security.json"
CREDS="$DATA/credentials"
ADMIN=_iotmon_admin
BRIDGE=_iotmon_bridge

rand() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }

rm -f "$DATA/ready"
if [ ! -s "$CREDS" ] || [ ! -s "$DYNSEC" ]; then
    admin_pw="${IOTMON_MQTT_ADMIN_PASSWORD:-$(rand)}"
    bridge_pw="${IOTMON_MQTT_BRIDGE_PASSWORD:-$(rand)}"
    rm -f "$DYNSEC"
    mosquitto_ctrl dynsec init "$DYNSEC" "$ADMIN" "$admin_pw" >/dev/null
    (umask 077; printf 'MQTT_ADMIN_PASSWORD=%s\nMQTT_BRIDGE_PASSWORD=%s\nMQTT_BRIDGE_PENDING=1\n' \
        "$admin_pw" "$bridge_pw" >"$CREDS")
fi
# shellcheck disable=SC1090
. "$CREDS"
if id mosquitto >/dev/null 2>&1; then chown mosquitto "$DYNSEC" "$CREDS" 2>/dev/null || true; fi

mkdir -p "$SECRETS"
printf 'IOTMON_MQTT_URL=mqtt://%s:%s@%s:%s\nIOTMON_MQTT_ADMIN_URL=mqtt://%s:%s@%s:%s\n' \
    "$BRIDGE" "$MQTT_BRIDGE_PASSWORD" "$HOST" "$PORT" "$ADMIN" "$MQTT_ADMIN_PASSWORD" "$HOST" "$PORT" \
    >"$SECRETS/mqtt.env.tmp"
chmod 644 "$SECRETS/mqtt.env.tmp"  # read by the iotmon containers' own user
mv "$SECRETS/mqtt.env.tmp" "$SECRETS/mqtt.env"

mosquitto -c "$CONF" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT

ctl() { mosquitto_ctrl -h 127.0.0.1 -p "$PORT" -u "$ADMIN" -P "$MQTT_ADMIN_PASSWORD" dynsec "$@" 2>&1; }
if [ "${MQTT_BRIDGE_PENDING:-0}" = 1 ]; then
    n=0
    until ctl getClient "$ADMIN" | grep -q "^Username: *$ADMIN"; do
        n=$((n + 1))
        [ "$n" -lt 150 ] || { echo "mosquitto did not come up for the admin" >&2; exit 1; }
        sleep 0.2
    done
    # The bridge reads every device topic, shared subscriptions included; it publishes nothing.
    ctl createRole bridge >/dev/null
    ctl addRoleACL bridge subscribePattern '#' allow >/dev/null
    ctl addRoleACL bridge subscribePattern '$share/#' allow >/dev/null
    ctl addRoleACL bridge unsubscribePattern '#' allow >/dev/null
    ctl createClient "$BRIDGE" -p "$MQTT_BRIDGE_PASSWORD" >/dev/null
    ctl addClientRole "$BRIDGE" bridge >/dev/null
    ctl getClient "$BRIDGE" | grep -q '^Roles: *bridge' || { echo "could not create the bridge client" >&2; exit 1; }
    (umask 077; grep -v '^MQTT_BRIDGE_PENDING=' "$CREDS" >"$CREDS.tmp" && mv "$CREDS.tmp" "$CREDS")
fi
touch "$DATA/ready"
wait "$pid" || true
wait "$pid" 2>/dev/null || true  # after a signal, the first wait returns before mosquitto exits
