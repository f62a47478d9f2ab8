#!/bin/sh
# ajard package: after install or upgrade (deb: configure; rpm: 1 or 2).
# DPKG_ROOT is set when dpkg installs into another root (dpkg --root with
# --force-script-chrootless): then nothing here touches the running system.
set -e
root="${DPKG_ROOT:-}"

case "$1" in
configure | 1 | 2) ;;
*) exit 0 ;;
esac

# The service's own user: no login, no home beyond its data folder.
if ! grep -q '^ajar:' "$root/etc/passwd"; then
	if [ -n "$root" ]; then
		useradd --prefix "$root" --system --user-group --home-dir /var/lib/ajar --no-create-home --shell /usr/sbin/nologin --comment "ajar server" ajar
	else
		useradd --system --user-group --home-dir /var/lib/ajar --no-create-home --shell /usr/sbin/nologin --comment "ajar server" ajar
	fi
fi
uid=$(awk -F: '$1 == "ajar" { print $3 }' "$root/etc/passwd")
gid=$(awk -F: '$1 == "ajar" { print $3 }' "$root/etc/group")

# Data: the service's only; config: root's, readable by the service.
mkdir -p "$root/var/lib/ajar"
chown "$uid:$gid" "$root/var/lib/ajar"
chmod 0750 "$root/var/lib/ajar"
chown "root:$gid" "$root/etc/ajar" "$root/etc/ajar/ajard.toml"
chmod 0750 "$root/etc/ajar"
chmod 0640 "$root/etc/ajar/ajard.toml"

if [ -n "$root" ]; then
	systemctl --root="$root" enable ajard.service >/dev/null 2>&1 || true
elif [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if [ "$1" = configure ] && [ -z "$2" ] || [ "$1" = 1 ]; then
		systemctl enable --now ajard.service
	else
		systemctl try-restart ajard.service
	fi
else
	systemctl enable ajard.service >/dev/null 2>&1 || true
fi
exit 0
