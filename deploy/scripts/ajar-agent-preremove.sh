#!/bin/sh
# ajar-agent package: before removal (deb: remove; rpm: 0). With no agent
# left to open them, the JIT ports must not stay locked: the agent's
# uninstall removes the table inet ajar and the enrollment.
set -e
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac
if [ -n "${DPKG_ROOT:-}" ]; then
	systemctl --root="$DPKG_ROOT" disable ajar-agent.service >/dev/null 2>&1 || true
	exit 0
fi
if [ -d /run/systemd/system ]; then
	systemctl disable --now ajar-agent.service || true
fi
ajar-agent uninstall || true
exit 0
