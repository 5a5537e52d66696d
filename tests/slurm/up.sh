#!/usr/bin/env bash
# Start a one-node SLURM cluster (slurmctld, slurmd, munge, slurmdbd + MariaDB for sacct)
# with two fake GPUs, for the workflow tests. Needs root and Debian's packages (installed
# with apt-get when missing). Idempotent: daemons it started and that are alive are kept.
#
#   DYNAMIGHT_SLURM_STATE   state folder (default /var/tmp/dynamight-slurm)
#   DYNAMIGHT_SLURM_FORCE=1 overwrite an /etc/slurm configuration this script did not write
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${DYNAMIGHT_SLURM_STATE:-/var/tmp/dynamight-slurm}"
PIDS="$STATE/pids"
MARK="dynamight-test-cluster"

say() { echo "[test-cluster] $*"; }
die() { echo "[test-cluster] cannot start: $*" >&2; exit 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
recorded() { [ -f "$PIDS" ] && awk -v n="$1" '$1 == n { p = $2 } END { print p }' "$PIDS"; }
remember() { echo "$1 $2" >> "$PIDS"; }
retry() { local seconds=$1; shift; for _ in $(seq 1 $((seconds * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done; return 1; }

[ "$(id -u)" = 0 ] || die "must run as root (daemons and /etc/slurm)"

missing=()
for pair in munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client \
            slurmdbd:slurmdbd mariadbd:mariadb-server; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "packages missing (${missing[*]}) and no apt-get"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$STATE"
  apt-get install -y --no-install-recommends "${missing[@]}" > "$STATE/apt.log" 2>&1 || {
    apt-get update >> "$STATE/apt.log" 2>&1
    apt-get install -y --no-install-recommends "${missing[@]}" >> "$STATE/apt.log" 2>&1 ||
      die "apt-get install failed; see $STATE/apt.log"
  }
fi

mkdir -p "$STATE"/{spool/ctld,spool/d,log,mysql,mysqld} /etc/slurm
touch "$PIDS"

# ---- configuration, rendered from this host ------------------------------------------
HOST="$(hostname -s)"
hardware="$(slurmd -C | head -n1)"
HARDWARE="$(grep -oE '(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+' <<< "$hardware" | tr '\n' ' ')"
MEMORY_MB=$(( $(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<< "$hardware") * 9 / 10 ))
render() {
  sed -e "s|@HOST@|$HOST|g; s|@HARDWARE@|$HARDWARE|g; s|@MEMORY_MB@|$MEMORY_MB|g; s|@STATE@|$STATE|g" "$1"
}
changed=0
for name in slurm.conf gres.conf slurmdbd.conf; do
  target="/etc/slurm/$name"
  if [ -f "$target" ] && ! grep -q "$MARK" "$target" && [ "${DYNAMIGHT_SLURM_FORCE:-0}" != 1 ]; then
    die "$target exists and was not written by this script (set DYNAMIGHT_SLURM_FORCE=1)"
  fi
  render "$HERE/$name.in" > "$STATE/$name"
  if ! cmp -s "$STATE/$name" "$target"; then
    install -m "$([ "$name" = slurmdbd.conf ] && echo 600 || echo 644)" "$STATE/$name" "$target"
    changed=1
  fi
done

# ---- munge ---------------------------------------------------------------------------
if ! alive "$(recorded munged)"; then
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  if [ -f /run/munge/munged.pid ] && alive "$(cat /run/munge/munged.pid)"; then
    say "reusing a munged this script did not start"
    remember munged-foreign "$(cat /run/munge/munged.pid)"
  else
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged
    retry 10 test -S /run/munge/munge.socket.2 || die "munged did not start"
    remember munged "$(cat /run/munge/munged.pid)"
  fi
fi
munge -n | unmunge >/dev/null || die "munge self-test failed"

# ---- MariaDB and slurmdbd (accounting, so that sacct works) -------------------------
SOCKET="$STATE/mysqld/mysqld.sock"
if ! alive "$(recorded mariadbd)"; then
  chown -R mysql:mysql "$STATE/mysql" "$STATE/mysqld"
  [ -d "$STATE/mysql/mysql" ] || mariadb-install-db --user=mysql --datadir="$STATE/mysql" \
    --auth-root-authentication-method=socket --skip-test-db > "$STATE/log/mariadb-install.log" 2>&1
  /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" --socket="$SOCKET" \
    --pid-file="$STATE/mysqld/mysqld.pid" --bind-address=127.0.0.1 --port=3306 \
    --log-error="$STATE/log/mariadb.err" --innodb-buffer-pool-size=128M \
    --innodb-lock-wait-timeout=900 --skip-name-resolve >/dev/null 2>&1 &
  remember mariadbd $!
  retry 30 mariadb --socket="$SOCKET" -uroot -e 'select 1' || die "MariaDB did not start; see $STATE/log/mariadb.err"
  mariadb --socket="$SOCKET" -uroot <<'SQL'
CREATE DATABASE IF NOT EXISTS dynamight_slurm_acct;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'dynamight-test';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'dynamight-test';
GRANT ALL ON dynamight_slurm_acct.* TO 'slurm'@'localhost';
GRANT ALL ON dynamight_slurm_acct.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
fi
if ! alive "$(recorded slurmdbd)"; then
  mkdir -p /run/mysqld && ln -sf "$SOCKET" /run/mysqld/mysqld.sock
  /usr/sbin/slurmdbd
  retry 20 test -s "$STATE/slurmdbd.pid" || die "slurmdbd did not start; see $STATE/log/slurmdbd.log"
  remember slurmdbd "$(cat "$STATE/slurmdbd.pid")"
  retry 30 sacctmgr -n list cluster || die "slurmdbd does not answer; see $STATE/log/slurmdbd.log"
  sacctmgr -i add cluster dynamight >/dev/null 2>&1 || true
  sacctmgr -i add account local Description=tests Organization=tests >/dev/null 2>&1 || true
  sacctmgr -i add user root Account=local DefaultAccount=local >/dev/null 2>&1 || true
fi

# ---- controller and node -------------------------------------------------------------
if ! alive "$(recorded slurmctld)"; then
  /usr/sbin/slurmctld -i
  retry 20 test -s "$STATE/slurmctld.pid" || die "slurmctld did not start; see $STATE/log/slurmctld.log"
  remember slurmctld "$(cat "$STATE/slurmctld.pid")"
  retry 30 scontrol ping || die "slurmctld does not answer; see $STATE/log/slurmctld.log"
elif [ "$changed" = 1 ]; then
  scontrol reconfigure
fi
if ! alive "$(recorded slurmd)"; then
  /usr/sbin/slurmd
  retry 20 test -s "$STATE/slurmd.pid" || die "slurmd did not start; see $STATE/log/slurmd.log"
  remember slurmd "$(cat "$STATE/slurmd.pid")"
fi
for _ in $(seq 1 120); do
  node_state="$(sinfo -h -N -o %T -n "$HOST" 2>/dev/null | head -n1)"
  case "$node_state" in
    idle*|mixed*|allocated*) say "ready: node $HOST is $node_state"; exit 0 ;;
    down*|drain*|*drain*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
die "node $HOST did not become idle (state: ${node_state:-unknown}); see $STATE/log/"
