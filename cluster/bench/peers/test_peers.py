"""Unit tests of the peer harness's own logic, with real processes where it handles them:
`python3 -m unittest discover -s cluster/bench/peers` (self-check.sh runs them first)."""
import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import harness  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:18090/api/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.40ms  350.12us   9.81ms   80.00%
    Req/Sec    45.12k     1.02k   47.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.52ms
     90%    1.80ms
     99%    2.41ms
  135336 requests in 3.00s, 10.20MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  45112.33
Transfer/sec:      3.40MB
"""

H2LOAD_OUTPUT = """starting benchmark...
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Application protocol: h2
finished in 2.00s, 5610.00 req/s, 332.70KB/s
requests: 11220 total, 11320 started, 11220 done, 11218 succeeded, 2 failed, 3 errored, 4 timeout
status codes: 11218 2xx, 0 3xx, 1 4xx, 0 5xx
"""

TEMPLATE = """frontend fe
    plain line
    claims rule  # when: jwt claims
    signature rule @ALG@  # when: jwt
"""


class WrkOutputTests(unittest.TestCase):
    def test_rate_percentiles_in_milliseconds_non2xx_and_every_kind_of_socket_error_are_read(self):
        figures = harness.wrk_figures(WRK_OUTPUT)
        self.assertEqual(figures, {"rps": 45112.33, "p50_ms": 0.812, "p99_ms": 2.41, "non2xx": 7, "errors": 5})

    def test_output_without_errors_or_non2xx_lines_reads_as_zero_of_each(self):
        text = "\n".join(line for line in WRK_OUTPUT.splitlines() if "errors" not in line and "Non-2xx" not in line)
        figures = harness.wrk_figures(text)
        self.assertEqual((figures["non2xx"], figures["errors"]), (0, 0))


class H2loadOutputTests(unittest.TestCase):
    # start µs, status, duration µs: 100 requests of 1..100 ms, one of them a 401, one a failed stream.
    LOG = [f"1700000000{i:06d}\t{401 if i == 7 else -1 if i == 8 else 200}\t{i * 1000}\n" for i in range(1, 101)]

    def test_rate_comes_from_the_output_and_percentiles_by_nearest_rank_from_the_per_request_log(self):
        figures = harness.h2load_figures(H2LOAD_OUTPUT, self.LOG)
        self.assertEqual((figures["rps"], figures["p50_ms"], figures["p99_ms"]), (5610.0, 50.0, 99.0))

    def test_non2xx_counts_refusals_and_failed_streams_and_errors_count_errored_and_timed_out_requests(self):
        figures = harness.h2load_figures(H2LOAD_OUTPUT, self.LOG)
        self.assertEqual((figures["non2xx"], figures["errors"]), (2, 7))

    def test_a_run_that_did_not_negotiate_h2_is_told_apart(self):
        self.assertTrue(harness.h2load_figures(H2LOAD_OUTPUT, [])["h2"])
        self.assertFalse(harness.h2load_figures(H2LOAD_OUTPUT.replace(": h2", ": http/1.1"), [])["h2"])

    def test_the_negotiated_cipher_is_read_so_a_run_on_another_one_can_be_marked(self):
        self.assertEqual(harness.h2load_figures(H2LOAD_OUTPUT, [])["cipher"], "TLS_AES_128_GCM_SHA256")
        self.assertEqual(harness.h2load_figures(H2LOAD_OUTPUT.replace("Cipher: TLS_AES_128_GCM_SHA256\n", ""), [])["cipher"], "")

    def test_shapes_are_connections_x_streams_and_anything_else_is_refused(self):
        self.assertEqual(harness.h2_shape("64x10"), ("64", "10"))
        for bad in ("64", "x10", "64x", "64*10"):
            with self.assertRaises(ValueError):
                harness.h2_shape(bad)


class TemplateTests(unittest.TestCase):
    def test_the_signature_rule_is_kept_only_in_jwt_mode_and_the_claim_rules_in_jwt_and_claims_modes(self):
        jwt = harness.render_template(TEMPLATE, "jwt", {"ALG": "RS256"})
        claims = harness.render_template(TEMPLATE, "claims", {"ALG": "RS256"})
        plain = harness.render_template(TEMPLATE, "", {"ALG": "RS256"})
        self.assertEqual(jwt, "frontend fe\n    plain line\n    claims rule\n    signature rule RS256\n")
        self.assertEqual(claims, "frontend fe\n    plain line\n    claims rule\n")
        self.assertEqual(plain, "frontend fe\n    plain line\n")

    def test_with_several_modes_a_line_is_kept_when_any_of_its_modes_is_given(self):
        text = TEMPLATE + "    bind plain  # when: h1\n    bind tls @ALG@  # when: h2\n"
        self.assertEqual(harness.render_template(text, "claims h2", {"ALG": "RS256"}),
                         "frontend fe\n    plain line\n    claims rule\n    bind tls RS256\n")
        self.assertEqual(harness.render_template(text, " h1", {"ALG": "RS256"}),
                         "frontend fe\n    plain line\n    bind plain\n")


class CheckTests(unittest.TestCase):
    def test_each_expectation_accepts_exactly_its_statuses(self):
        self.assertEqual([s for s in (200, 204, 301, 400, 401, 403, 500) if checks.matches("2xx", s)], [200, 204])
        self.assertEqual([s for s in (200, 400, 401, 403, 500) if checks.matches("4xx", s)], [400, 401, 403])
        self.assertEqual([s for s in (200, 400, 401, 403) if checks.matches("401", s)], [401])

    def test_a_closed_port_counts_as_no_answer(self):
        self.assertEqual(checks.status_of("http://127.0.0.1:9/", "token", timeout=1), 0)
        self.assertEqual(checks.h2_status_of("https://127.0.0.1:9/", "token", os.devnull, timeout=1), 0)

    def test_an_answer_in_http_1_counts_as_none_for_the_http2_checks(self):
        server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_port}/"
            self.assertEqual(checks.status_of(url, ""), 200)  # it does answer, in HTTP/1
            self.assertEqual(checks.h2_status_of(url, "", os.devnull), 0)
        finally:
            server.shutdown()
            server.server_close()


class ProcessTreeTests(unittest.TestCase):
    def test_a_servers_tree_holds_its_grandchildren_and_stop_ends_all_of_them(self):
        with tempfile.NamedTemporaryFile() as log:
            server = procs.Server("t", ["bash", "-c", "bash -c 'sleep 60 & wait' & sleep 60 & wait"], 0, log.name)
            try:
                deadline = time.monotonic() + 5
                while len(procs.tree(server.pid)) < 4 and time.monotonic() < deadline:
                    time.sleep(0.05)
                members = procs.tree(server.pid)
                self.assertEqual(len(members), 4)  # the outer bash (taskset exec'd it), the inner one, two sleeps
            finally:
                server.stop()
            self.assertFalse([pid for pid in members if procs._stat(pid)])

    def test_a_tree_that_ignores_sigterm_is_killed_after_the_grace_period(self):
        with tempfile.NamedTemporaryFile() as log:
            # An ignored signal stays ignored across exec, so the sleep ignores SIGTERM too.
            server = procs.Server("t", ["bash", "-c", "trap '' TERM; sleep 60 & wait"], 0, log.name)
            time.sleep(0.3)
            members = procs.tree(server.pid)
            started = time.monotonic()
            server.stop(grace=0.3)
            self.assertLess(time.monotonic() - started, 3)
            self.assertFalse([pid for pid in members if procs._stat(pid)])

    def busy(self, seconds):
        return f"{sys.executable} -c 'import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass'"

    def test_cpu_burnt_by_a_live_child_of_the_subject_is_charged_to_the_subject(self):
        with tempfile.NamedTemporaryFile() as log:
            server = procs.Server("t", ["bash", "-c", f"{self.busy(0.6)}; sleep 60 & wait"], 0, log.name)
            try:
                usage = procs.run_accounted(["sleep", "1.5"], os.devnull, {"subject": server.pid})
            finally:
                server.stop()
            # The child burns 0.6 s of CPU within 1.5 s and is then still there (the sleep after it).
            self.assertGreater(usage["trees"]["subject"], 25)

    def test_cpu_of_a_child_that_exited_during_the_run_is_charged_to_the_subject(self):
        with tempfile.NamedTemporaryFile() as log:
            # bash waits for (reaps) the busy child, whose CPU then counts in bash's cutime.
            server = procs.Server("t", ["bash", "-c", f"{self.busy(0.9)}; sleep 60; true"], 0, log.name)
            try:
                usage = procs.run_accounted(["sleep", "3"], os.devnull, {"subject": server.pid})
                self.assertEqual(len(procs.tree(server.pid)), 2)  # bash and the sleep: the busy child is gone
            finally:
                server.stop()
            self.assertGreater(usage["trees"]["subject"], 20)  # 0.9 s in 3 s


class ReportTests(unittest.TestCase):
    def row(self, config, rps, us):
        return dict(dict.fromkeys(report.COLUMNS, "0"), config=config, tokens="single", run="1",
                    rps=str(rps), us_per_req=str(us), note="-")

    def test_a_subject_is_divided_by_its_own_peer_and_by_nginx(self):
        text = report.ratios([self.row("nginx", 50000, 15), self.row("haproxy-jwt-es256", 10000, 100),
                              self.row("haproxy-jwt-rs256", 20000, 50), self.row("subject-es256", 40000, 25)])
        line = next(line for line in text.splitlines() if line.startswith("subject-es256"))
        self.assertEqual(line.split()[3:9], ["0.80", "haproxy-jwt-es256", "10000", "100.0", "4.00", "0.25"])

    def test_an_http2_subject_is_divided_by_its_peer_and_nginx_of_the_same_shape_and_held_to_the_goals(self):
        def row(config, rps, us, p99):
            return dict(self.row(config, rps, us), p99_ms=str(p99))
        text = report.ratios_h2([row("h2-nginx@1x100", 50000, 15, 2.0), row("h2-nginx@64x10", 10000, 30, 9.0),
                                 row("h2-haproxy-jwt-rs256@1x100", 10000, 80, 5.0),
                                 row("h2-haproxy-jwt-rs256@64x10", 9000, 80, 20.0),
                                 row("h2-subject-rs256@1x100", 40000, 20, 3.0),
                                 row("h2-subject-rs256@64x10", 9000, 25, 30.0)])
        line = next(line for line in text.splitlines() if line.startswith("h2-subject-rs256@64x10"))
        self.assertEqual(line.split()[5:11], ["0.90", "h2-haproxy-jwt-rs256", "9000", "20.000", "1.00", "0.31"])
        goals = [line for line in text.splitlines() if line.startswith("goals")]
        self.assertEqual(len(goals), 2)
        self.assertIn("= 4.00 (goal >= 2.0: met); / nginx h2 = 0.80 (goal >= 0.7: met); p99 3.000 ms", goals[0])
        self.assertIn("(goal below: met)", goals[0])
        self.assertIn("= 1.00 (goal >= 2.0: missed by 50 %); / nginx h2 = 0.90 (goal >= 0.7: met)", goals[1])
        self.assertIn("(goal below: missed)", goals[1])


if __name__ == "__main__":
    unittest.main()
