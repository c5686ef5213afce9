#!/usr/bin/env bash
# Writes a Redis ACL file for one Portcullis cluster from cluster/redis/users.acl: the role users
# switched on with the SHA-256 of their passwords (never the passwords themselves), and every key
# and channel pattern moved to the cluster's key prefix.
#
#   PORTCULLIS_REDIS_GATEWAY_PASSWORD=… PORTCULLIS_REDIS_CONTROL_PASSWORD=… \
#     cluster/redis/make-acl.sh [--prefix portcullis:] [--template FILE] > /etc/redis/users.acl
#
# or with the passwords in files (one line each; the usual way under systemd or Kubernetes):
#
#   cluster/redis/make-acl.sh --gateway-password-file gw.pw --control-password-file cp.pw > users.acl
#
# The replica and Sentinel users (what a replica's `masteruser` and a Sentinel's `auth-user`
# log in as) stay off unless their passwords are given: PORTCULLIS_REDIS_REPLICA_PASSWORD /
# --replica-password-file and PORTCULLIS_REDIS_SENTINEL_PASSWORD / --sentinel-password-file.
#
# Load the result with `aclfile /etc/redis/users.acl` in redis.conf (or `ACL LOAD` after
# replacing the file). Generate a password: openssl rand 32 | basenc --base64url | tr -d =
# See docs/security.md ("Redis ACL users") and docs/configuration.md ("Redis ACL users").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
template="$here/users.acl"
prefix="portcullis:"
gateway_password="${PORTCULLIS_REDIS_GATEWAY_PASSWORD:-}"
control_password="${PORTCULLIS_REDIS_CONTROL_PASSWORD:-}"
replica_password="${PORTCULLIS_REDIS_REPLICA_PASSWORD:-}"
sentinel_password="${PORTCULLIS_REDIS_SENTINEL_PASSWORD:-}"

die() { echo "make-acl.sh: $*" >&2; exit 2; }
read_password() {
    [[ -r "$1" ]] || die "cannot read password file $1"
    head -n 1 "$1" | tr -d '\r\n'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) [[ $# -ge 2 ]] || die "--prefix needs a value"; prefix="$2"; shift 2 ;;
        --template) [[ $# -ge 2 ]] || die "--template needs a file"; template="$2"; shift 2 ;;
        --gateway-password-file) [[ $# -ge 2 ]] || die "$1 needs a file"; gateway_password=$(read_password "$2"); shift 2 ;;
        --control-password-file) [[ $# -ge 2 ]] || die "$1 needs a file"; control_password=$(read_password "$2"); shift 2 ;;
        --replica-password-file) [[ $# -ge 2 ]] || die "$1 needs a file"; replica_password=$(read_password "$2"); shift 2 ;;
        --sentinel-password-file) [[ $# -ge 2 ]] || die "$1 needs a file"; sentinel_password=$(read_password "$2"); shift 2 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

# The prefix becomes part of glob patterns (~prefix* and &prefix*): refuse anything Redis would
# read as a glob or that would split the line, so a prefix cannot widen a role's rights.
[[ -n "$prefix" ]] || die "the prefix must not be empty (an empty prefix would mean every key)"
[[ "$prefix" =~ ^[A-Za-z0-9:._/-]+$ ]] || die "prefix '$prefix' may only use letters, digits and : . _ / - (no glob characters or spaces)"
[[ -n "$gateway_password" ]] || die "no gateway password: set PORTCULLIS_REDIS_GATEWAY_PASSWORD or --gateway-password-file"
[[ -n "$control_password" ]] || die "no control-plane password: set PORTCULLIS_REDIS_CONTROL_PASSWORD or --control-password-file"
passwords=("$gateway_password" "$control_password")
[[ -z "$replica_password" ]] || passwords+=("$replica_password")
[[ -z "$sentinel_password" ]] || passwords+=("$sentinel_password")
[[ $(printf '%s\n' "${passwords[@]}" | sort -u | wc -l) -eq ${#passwords[@]} ]] || die "every role's password must differ from the others"
[[ -r "$template" ]] || die "cannot read $template"

hash() { printf '%s' "$1" | sha256sum | cut -c1-64; }
gateway_hash=$(hash "$gateway_password")
control_hash=$(hash "$control_password")
# A role without a password keeps `reset` alone: off, no password, nobody can log in as it.
replica_on=""; [[ -z "$replica_password" ]] || replica_on="on #$(hash "$replica_password") "
sentinel_on=""; [[ -z "$sentinel_password" ]] || sentinel_on="on #$(hash "$sentinel_password") "

# The template's default user is off with no password — nobody can log in as it — but holds
# every right: Redis replays its append-only file as that user and, before the fix of
# redis/redis#14541 (Debian's 7.0 lacks it), checks its rights again at each transaction's EXEC,
# where every script's writes are logged. A default user without rights lost every revocation at
# a restart (docs/security.md, "Redis ACL users"). Its `~*`/`&*` are not the prefix's.
# Key patterns (~, %R~, %W~) and channel patterns (&) name the prefix; user names do not
# (they are portcullis-…, with a hyphen).
escaped_prefix=$(printf '%s' "$prefix" | sed 's/[\/&|]/\\&/g')
sed -e "s|~portcullis:|~${escaped_prefix}|g" \
    -e "s|&portcullis:|\\&${escaped_prefix}|g" \
    -e "s|^user portcullis-gateway reset |user portcullis-gateway reset on #${gateway_hash} |" \
    -e "s|^user portcullis-control reset |user portcullis-control reset on #${control_hash} |" \
    -e "s|^user portcullis-replica reset |user portcullis-replica reset ${replica_on}|" \
    -e "s|^user portcullis-sentinel reset |user portcullis-sentinel reset ${sentinel_on}|" \
    "$template"
