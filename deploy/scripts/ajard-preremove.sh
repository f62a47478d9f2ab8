#!/bin/sh
# ajard package: before removal (deb: remove; rpm: 0). Upgrades keep the
# service running until the new postinstall restarts it. The data folder,
# the config and the user stay (the activity log is evidence).
set -e
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac
if [ -n "${DPKG_ROOT:-}" ]; then
	systemctl --root="$DPKG_ROOT" disable ajard.service >/dev/null 2>&1 || true
elif [ -d /run/systemd/system ]; then
	systemctl disable --now ajard.service || true
fi
exit 0
