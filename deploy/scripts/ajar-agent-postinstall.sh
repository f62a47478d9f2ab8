#!/bin/sh
# ajar-agent package: after install or upgrade (deb: configure; rpm: 1 or
# 2). The unit is enabled, but it starts, and locks ports, only once the
# host is enrolled (ConditionPathExists=/var/lib/ajar-agent/agent.json).
set -e
root="${DPKG_ROOT:-}"
case "$1" in
configure | 1 | 2) ;;
*) exit 0 ;;
esac
mkdir -p "$root/var/lib/ajar-agent"
chmod 0700 "$root/var/lib/ajar-agent"
if [ -n "$root" ]; then
	systemctl --root="$root" enable ajar-agent.service >/dev/null 2>&1 || true
elif [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable ajar-agent.service
	# An enrolled host that upgrades gets the new agent now.
	systemctl try-restart ajar-agent.service
else
	systemctl enable ajar-agent.service >/dev/null 2>&1 || true
fi
exit 0
