# Loads the new unit. The service is neither enabled nor started on a first install: edit
# /etc/ggrok/server.toml first, then `systemctl enable --now ggrok-server`.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
