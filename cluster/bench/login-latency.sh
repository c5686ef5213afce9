#!/usr/bin/env bash
# Sign-in latency of the built-in authorization server at a fixed rate: one control plane (release
# build) and its Redis on loopback, one user hashed by `portcullis hash-password` (scrypt at the
# default parameters), one public client the user has already allowed. A Python driver first opens
# one login page per sign-in (authorization request with PKCE; session cookie and CSRF token), then
# posts the sign-in forms open-loop at RATE per second for DURATION seconds, each on its own
# connection and thread, and times each POST from its scheduled start to the end of the answer,
# which must be the redirect (303) to the client with a code. Prints p50/p90/p99/max and the
# achieved rate, and the control plane's CPU time per sign-in (which other load on the machine
# changes little) with the rate all cores could sustain at that cost; a login that is not a
# redirect with a code counts as an error.
#   cluster/bench/login-latency.sh [BINARY]           # default .build/release/portcullis
#   RATE=10 DURATION=30 cluster/bench/login-latency.sh
# Build the binary with `cluster/build-release.sh --product portcullis`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(realpath "${1:-$root/.build/release/portcullis}")
[ -x "$bin" ] || { echo "no binary at $bin (build with: cluster/build-release.sh --product portcullis)" >&2; exit 2; }
rate=${RATE:-10} duration=${DURATION:-30}
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
redis_port=$(free_port) port=$(free_port) admin_port=$(free_port)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

password=$(head -c 24 /dev/urandom | basenc --base64url)
hash=$(printf '%s\n' "$password" | "$bin" hash-password)
head -c 32 /dev/urandom | basenc --base64url | tr -d '=\n' >"$work/cluster.secret"
cat >"$work/users.yaml" <<EOF
users:
  - username: bench
    password_hash: $hash
    claims: {tenant: bench}
EOF
cat >"$work/control.yaml" <<EOF
node_id: control-bench
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin_port
cluster:
  redis: redis://127.0.0.1:$redis_port
  secret_file: $work/cluster.secret
admin_tokens:
  - {name: bench, sha256: $(head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)}
authorization_server:
  issuer: http://127.0.0.1:$port
  audience: api://bench
  access_token_ttl: 5m
  key_encryption_key_file: kek.secret
  users_file: users.yaml
  clients:
    - {client_id: bench-app, public: true, redirect_uris: ["http://127.0.0.1:9/callback"], scopes: [orders:read], grant_types: [authorization_code]}
EOF

redis-server --port "$redis_port" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
"$bin" control --config "$work/control.yaml" >"$work/control.log" 2>&1 &
control_pid=$!
pids+=($control_pid)
deadline=$((SECONDS + 30))
until curl -fsS -o /dev/null "http://127.0.0.1:$port/oauth2/jwks" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "the control plane did not start:"; tail -20 "$work/control.log"; exit 1; } >&2
    sleep 0.2
done

echo "login-latency: $("$bin" --version 2>/dev/null || echo portcullis), scrypt $(cut -d'$' -f3 <<<"$hash"), $rate logins/s for ${duration}s, $(nproc) cores"
python3 - "http://127.0.0.1:$port" "$password" "$rate" "$duration" "$control_pid" <<'PY'
import base64, hashlib, http.client, os, re, secrets, sys, threading, time, urllib.parse
issuer, password, rate, duration, control_pid = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]

def control_cpu_seconds():
    """User + system CPU time of the control plane so far (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{control_pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

host, port = urllib.parse.urlparse(issuer).hostname, urllib.parse.urlparse(issuer).port

def request(method, path, body=None, cookie=None):
    connection = http.client.HTTPConnection(host, port, timeout=300)
    headers = {"Connection": "close"}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if cookie:
        headers["Cookie"] = "portcullis_session=" + cookie
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    text = response.read().decode(errors="replace")
    connection.close()
    return response, text

def login_page():
    """A fresh authorization request: the login form's fields and the session cookie."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode({"response_type": "code", "client_id": "bench-app", "redirect_uri": "http://127.0.0.1:9/callback",
                                    "scope": "orders:read", "state": secrets.token_urlsafe(8), "code_challenge": challenge,
                                    "code_challenge_method": "S256"})
    response, text = request("GET", "/oauth2/authorize?" + query)
    assert response.status == 200, (response.status, text[:300])
    cookie = response.getheader("Set-Cookie").split(";")[0].split("=", 1)[1]
    fields = hidden_fields(text)
    fields.update(username="bench", password=password)
    return cookie, urllib.parse.urlencode(fields)

def sign_in(cookie, form):
    """Posts the sign-in form: (status, Location, page, the new session cookie)."""
    response, text = request("POST", "/oauth2/authorize", form, cookie)
    new_cookie = (response.getheader("Set-Cookie") or "=").split(";")[0].split("=", 1)[1]
    return response.status, response.getheader("Location") or "", text, new_cookie

def hidden_fields(page):
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))
    return {k: v.replace("&amp;", "&").replace("&quot;", '"').replace("&#39;", "'") for k, v in fields.items()}

# Consent once, so each timed sign-in ends in the redirect with a code.
cookie, form = login_page()
status, location, text, signed_in = sign_in(cookie, form)
assert status == 200 and "Allow access?" in text, (status, location, text[:300])
consent = hidden_fields(text)
consent["decision"] = "allow"
response, text = request("POST", "/oauth2/consent", urllib.parse.urlencode(consent), signed_in)
assert response.status in (302, 303) and "code=" in (response.getheader("Location") or ""), (response.status, text[:300])
count = int(rate * duration)
prepared = [login_page() for _ in range(count)]
latencies, errors = [], []
lock = threading.Lock()

def timed(scheduled, cookie, form):
    time.sleep(max(0.0, scheduled - time.monotonic()))
    try:
        status, location, _, _ = sign_in(cookie, form)
        ok = status in (302, 303) and "code=" in location
    except OSError as error:
        ok, status = False, str(error)
    elapsed = time.monotonic() - scheduled
    with lock:
        (latencies if ok else errors).append(elapsed if ok else status)

cpu_before = control_cpu_seconds()
start = time.monotonic() + 0.5
threads = [threading.Thread(target=timed, args=(start + i / rate, *prepared[i])) for i in range(count)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
finished = time.monotonic() - start
cpu_per_login = (control_cpu_seconds() - cpu_before) / max(1, len(latencies) + len(errors))
latencies.sort()
def q(p):
    return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
print(f"{len(latencies)} sign-ins, {len(errors)} errors{' ' + str(errors[:3]) if errors else ''}; offered {rate:g}/s for {duration:g} s, "
      f"all answered after {finished:.1f} s ({len(latencies) / finished:.2f}/s)")
print(f"control plane CPU per sign-in: {cpu_per_login * 1000:.0f} ms, so {os.cpu_count()} cores sign in at most "
      f"{os.cpu_count() / cpu_per_login:.1f}/s")
print(f"latency from scheduled start to the redirect: p50 {q(0.50):.0f} ms, p90 {q(0.90):.0f} ms, p99 {q(0.99):.0f} ms, max {q(1.0):.0f} ms")
PY
