# A private OpenSSH server for the remote (SSH) and Ansible steps' tests and the demo
# (sourced by setup.sh; scripts/sshd.sh start|stop|status runs it on its own).
#
# - Installs Debian's openssh-server (only the binary is used: the system's sshd service is
#   neither configured nor started).
# - Generates, once, a host key and a user key pair under $ANSFLOW_CACHE_DIR/sshd/, and an
#   authorized_keys file holding the user key (the server accepts only that key, for the
#   user running set-up).
# - Starts sshd -D on a free 127.0.0.1 port with its own config, pidfile and log; a running
#   one is re-used. Root login is allowed by key only (the tests run as root in CI).
# - Appends ANSFLOW_SSHD_PORT, ANSFLOW_SSHD_USER, ANSFLOW_SSHD_KEY (the user's private key),
#   ANSFLOW_SSHD_HOST_KEY_PUB (the host's public key file) and ANSFLOW_SSHD_DIR to
#   $ANSFLOW_ENV_FILE.
# shellcheck shell=bash

need_apt openssh-server openssh-client

_sshd_state="$ANSFLOW_CACHE_DIR/sshd"
mkdir -p "$_sshd_state"
chmod 700 "$_sshd_state"
[ -f "$_sshd_state/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ansflow-test-host \
  -f "$_sshd_state/host_ed25519"
[ -f "$_sshd_state/user_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ansflow-test-user \
  -f "$_sshd_state/user_ed25519"
cp "$_sshd_state/user_ed25519.pub" "$_sshd_state/authorized_keys"
chmod 600 "$_sshd_state/authorized_keys"
_sshd_user="$(id -un)"

_sshd_running() {
  [ -f "$_sshd_state/sshd.pid" ] && kill -0 "$(cat "$_sshd_state/sshd.pid")" 2>/dev/null \
    && [ -f "$_sshd_state/port" ] && (exec 3<>"/dev/tcp/127.0.0.1/$(cat "$_sshd_state/port")") \
    2>/dev/null
}

if ! _sshd_running; then
  _sshd_port="$(cat "$_sshd_state/port" 2>/dev/null || true)"
  if [ -z "$_sshd_port" ] || (exec 3<>"/dev/tcp/127.0.0.1/$_sshd_port") 2>/dev/null; then
    _sshd_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  fi
  echo "$_sshd_port" > "$_sshd_state/port"
  mkdir -p /run/sshd 2>/dev/null || true  # sshd's privilege-separation directory
  cat > "$_sshd_state/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $_sshd_port
HostKey $_sshd_state/host_ed25519
PidFile $_sshd_state/sshd.pid
AuthorizedKeysFile $_sshd_state/authorized_keys
AllowUsers $_sshd_user
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
MaxStartups 100:30:200
MaxSessions 100
ClientAliveInterval 15
Subsystem sftp internal-sftp
LogLevel INFO
CONF
  echo "starting a private sshd on 127.0.0.1:$_sshd_port" >&2
  "$(command -v sshd || echo /usr/sbin/sshd)" -f "$_sshd_state/sshd_config" \
    -E "$_sshd_state/sshd.log"
  for _ in $(seq 50); do _sshd_running && break; sleep 0.1; done
  _sshd_running || { echo "the private sshd did not start (see $_sshd_state/sshd.log)" >&2
                     return 1 2>/dev/null || exit 1; }
fi
{
  echo "export ANSFLOW_SSHD_PORT=$(cat "$_sshd_state/port")"
  echo "export ANSFLOW_SSHD_USER=$_sshd_user"
  echo "export ANSFLOW_SSHD_KEY=\"$_sshd_state/user_ed25519\""
  echo "export ANSFLOW_SSHD_HOST_KEY_PUB=\"$_sshd_state/host_ed25519.pub\""
  echo "export ANSFLOW_SSHD_DIR=\"$_sshd_state\""
} >> "$ANSFLOW_ENV_FILE"
