/*
 * Portcullis revocation-state protocol: a bounded Promela model, checked with spin.
 * Run it with cluster/model/check.sh; docs/model.md explains every part.
 *
 * One control plane (writer, heartbeat, PropagationTracker.wait), a pruner, two gateway nodes
 * and an adversary that owns Redis but not the cluster secret.
 *
 * Signed items are named by a code computed from their signed fields. A bit set per code says
 * whether an honest process has signed it. Redis holds codes. The adversary can therefore copy,
 * move, replay and delete signed items, but can only use codes whose bit is set (it cannot forge).
 *
 * Compile-time switches (check.sh --broken NAME passes -DBROKEN_NAME, --define NAME passes -DNAME):
 *   BROKEN_MERGE     a resync replaces the node's set instead of merging into it (the old bug)
 *   BROKEN_SEQMAC    the event MAC does not cover seq and epoch: a signed event verifies under
 *                    any score, in any epoch, and as any live sequence number
 *   BROKEN_ACKMAC    acks are not authenticated: the adversary can write one for any node
 *   BROKEN_HOLES     a node sets its applied sequence to head.seq even over missing entries
 *   BROKEN_STATELESS the writer signs (E, s+1) on whatever authentic head Redis shows (the design
 *                    as briefed): one (epoch, seq) can then name two different signed events
 *   IMPLWRITER       the writer as implemented in Swift (RevocationWriter): it remembers the
 *                    highest head it verified or wrote and starts a new epoch on a rolled-back
 *                    head, but keeps no memory of places it signed for in failed writes
 *   FIXBURN          with IMPLWRITER: a failed write burns the place it signed for; a head that
 *                    would reuse it starts a new epoch, like a rollback (fix A in the writer's style)
 *   ACKEVENT         alternative fix: an ack names the exact event the node applied, and wait
 *                    counts a node only for an ack of the control plane's own event
 *   ADV_STEPS=n      adversary budget (default 3)
 *   MAXEP=n          epochs the control plane may create (default 2, at most 3)
 *   RESTARTS=n       node restarts in one run (default 0; see docs/model.md)
 *   GIVEUP=0         after a failed write the admin always retries the same change
 *   SAMEID           with RESTARTS=1: a restarted node keeps its node id, so its earlier acks
 *                    still count for it (node_id from config, or hostname-pid with pid 1)
 *   SYMM             store one of each pair of states that differ only by swapping the nodes
 *   NOHIDDEN         keep scratch variables in the state vector (for pan -DBFS)
 *   COVER=n          a reachability probe (1..6) that must be violated: see below
 */

#ifndef ADV_STEPS
#define ADV_STEPS 3
#endif
#ifndef MAXEP
#define MAXEP 2
#endif
#ifndef RESTARTS
#define RESTARTS 0
#endif
#ifndef GIVEUP
#define GIVEUP 1
#endif

#define MAXSEQ 3        /* sequence numbers 1..3 inside an epoch */

/* Scratch variables are "hidden" (kept out of the stored state); pan's breadth-first mode,
   which check.sh uses to find a short counterexample, does not allow that (NOHIDDEN). */
#ifdef NOHIDDEN
#define HIDDEN
#else
#define HIDDEN hidden
#endif

/* revocation ids, as bits of a node's set */
#define A1 1
#define A2 2
#define ADD 1
#define DEL 2

/* The three changes the control plane makes, in this order (the "content" of an event). */
#define C_ADD_A1 0
#define C_DEL_A1 1      /* lifts exactly a1 */
#define C_ADD_A2 2
#define C_OP(c) ((c) == C_DEL_A1 -> DEL : ADD)
#define C_ID(c) ((c) == C_ADD_A2 -> A2 : A1)

/* Event code: the fields its MAC binds: epoch E in 1..MAXEP, seq s in 1..3, content c. */
#define EV(E, s, c) ((((E) - 1) * 3 + (s) - 1) * 3 + (c) + 1)
#define EV_C(r) (((r) - 1) % 3)
#define EV_S(r) ((((r) - 1) / 3) % 3 + 1)
#define EV_E(r) (((r) - 1) / 9 + 1)
#define NEVC 27         /* codes 1..27 */

/* Head code: epoch E, seq s in 0..3, floor F in 0..s. */
#define TRI(s)  ((s) * ((s) + 1) / 2)
#define HD(E, s, F) (((E) - 1) * 10 + TRI(s) + (F) + 1)
#define HW(h) (((h) - 1) % 10)
#define HE(h) (((h) - 1) / 10 + 1)
#define HS(h) (HW(h) >= 6 -> 3 : (HW(h) >= 3 -> 2 : (HW(h) >= 1 -> 1 : 0)))
#define HF(h) (HW(h) - TRI(HS(h)))
#define NHDC 30         /* codes 1..30 */

#define BIT(x) (1 << (x))

/* ---------------- signed material: only honest processes add to it ---------------- */

int evSigned = 0;               /* bit r: event r has been signed (and may be seen) */
int hdSigned = 0;               /* bit h: head h has been signed */

/* ---------------- Redis: the adversary may rewrite all of it ---------------- */

byte head = 0;                  /* rev:head: 0 = missing or garbage, else a head code */
byte rlog[4];                   /* rev:log: rlog[k] = event code under score k, 0 = none/garbage */
byte revseq = 0;                /* rev:seq: the writer's counter, unauthenticated. The Swift script
                                   has no rev:seq; there this stands for any way to make the
                                   script refuse while the head stays, e.g. a key of the wrong type */
/* rev:acks:*. Signed acks are never removed in the model: the adversary may delete acks,
   but fewer acks only make wait complete later, so keeping them all is its best case.
   Acks of an earlier incarnation of a node are dropped on restart: they carry another node id,
   and wait only counts acks from the ids of live nodes. */
byte ackMax[8];                 /* [node * 4 + epoch]: highest seq acked by the live incarnation */
/* ACKEVENT: bit (E-1)*3 + s-1 = the live incarnation acked the add(a2) event at (E, s). Acks
   of other events are not stored: wait never counts them. */
int  ackEv[2];
bool forged[2];                 /* BROKEN_ACKMAC: an ack for this node's live id was forged */

/* ---------------- control plane ---------------- */

byte nep = 0;                   /* epochs created; epoch numbers grow with creation time */
byte op = 0;                    /* next change to write: its content c, 3 = none left */
bool lifted = 0;                /* delete(a1) landed: a1's log entries have expired */
byte X = 0;                     /* add(a2) landed at (XE, X) */
byte XE = 0;
bool done = 0;                  /* wait(X) returned complete */
byte cntInc[2];                 /* which incarnation of each node wait counted */
bool wph = 0;                   /* writer: between reading the head and running the script */
byte wrh = 0;                   /* writer: the head it read */
#if defined(IMPLWRITER)
/* The Swift RevocationWriter: it remembers the highest head it verified or wrote (hE, hS). A head
   behind that, or behind the log's last signed entry, is a rollback: it starts a new epoch. It
   does not remember places it signed for in writes that failed. */
byte hE = 0;
byte hS = 0;
#define TAILK (rlog[3] != 0 -> 3 : (rlog[2] != 0 -> 2 : (rlog[1] != 0 -> 1 : 0)))
#define TAIL_AHEAD(h) (TAILK != 0 && EV_S(rlog[TAILK]) == TAILK && \
                       (EV_E(rlog[TAILK]) > HE(h) || (EV_E(rlog[TAILK]) == HE(h) && EV_S(rlog[TAILK]) > HS(h))))
#ifdef FIXBURN
/* Suggested fix: a failed write "burns" the place it signed for (bE, bS); a head that would put a
   new signature there is treated like a rollback (new epoch). */
byte bE = 0;
byte bS = 0;
#define BURNT(h) (HE(h) == bE && HS(h) < bS)
#else
#define BURNT(h) (0)
#endif
#define ROLLED_BACK(h) (HE(h) < hE || (HE(h) == hE && HS(h) < hS) || TAIL_AHEAD(h) || BURNT(h))
#define WRITE_OK(h, c) (!ROLLED_BACK(h))
#elif defined(BROKEN_STATELESS)
#define WRITE_OK(h, c) (1)
#else
/* The writer's memory (the default, fix A): the highest (epoch, seq) it has signed an event
   for, and which change. It never signs a different change for a place at or below that. */
byte sE = 0;
byte sS = 0;
byte sOp = 3;
#define WRITE_OK(h, c) (HE(h) > sE || (HE(h) == sE && (HS(h) + 1 > sS || (HS(h) + 1 == sS && (c) == sOp))))
#endif
bool pruned = 0;

/* ---------------- nodes ---------------- */

byte nE[2];                     /* epoch the node follows (0 = never synced) */
byte nA[2];                     /* applied sequence */
byte nSet[2];                   /* revocations in force at the node (bits A1, A2) */
byte nGhost[2];                 /* ids whose add it applied and whose delete it did not */
byte nInc[2];                   /* incarnation: a restarted node is a new node id */
byte restarts = 0;

byte budget = ADV_STEPS;

/* Scratch: set before use inside one indivisible step and cleared after; not in the state. */
HIDDEN byte tk;
HIDDEN byte tc;
HIDDEN byte tr;
HIDDEN byte th;
HIDDEN byte thole;
HIDDEN byte tgo;

/* ---------------- verification rules ---------------- */

/* Does log entry r, found under score k, verify for a node following epoch E? */
#ifdef BROKEN_SEQMAC
#define VALID_AT(r, k, E) ((r) != 0)
#else
#define VALID_AT(r, k, E) ((r) != 0 && EV_S(r) == (k) && EV_E(r) == (E))
#endif

/* Has some signed event with content c been signed (the adversary can relabel it under SEQMAC)? */
#define ANY_C(c) ((evSigned & CMASK(c)) != 0)
#define CMASK(c) (BIT((c) + 1) | BIT((c) + 4) | BIT((c) + 7) | BIT((c) + 10) | BIT((c) + 13) | \
                  BIT((c) + 16) | BIT((c) + 19) | BIT((c) + 22) | BIT((c) + 25))

/* Can a live message make node n apply content c as its next sequence? */
#ifdef BROKEN_SEQMAC
#define LIVE_OK(n, c) (nE[n] != 0 && nA[n] < MAXSEQ && ANY_C(c))
#else
#define LIVE_OK(n, c) (nE[n] != 0 && nA[n] < MAXSEQ && (evSigned & BIT(EV(nE[n], nA[n] + 1, c))) != 0)
#endif

#ifdef ACKEVENT
#define COUNTED(n) (forged[n] || (ackEv[n] & BIT((XE - 1) * 3 + X - 1)) != 0)
#else
#define COUNTED(n) (forged[n] || ackMax[(n) * 4 + XE] >= X)
#endif

/* ---------------- symmetry reduction (SYMM) ----------------
   The two nodes run the same code and everything else treats them alike, and between steps
   both node processes sit at the top of their loop. So a state and the same state with the
   two nodes' data swapped have the same futures, up to renaming the nodes. With SYMM, every
   step that changes node data ends by putting the smaller node first, so only one of each
   pair is stored. check.sh uses SYMM for the verdict; it searches for counterexamples
   without it, so the nodes in a trail keep their names. */

#ifdef SYMM
HIDDEN int ti;
#define NKEY(n) (nE[n] + 4 * nA[n] + 16 * nSet[n] + 64 * nGhost[n] + 256 * ackMax[(n) * 4 + 1] + \
                 1024 * ackMax[(n) * 4 + 2] + 4096 * ackMax[(n) * 4 + 3] + 16384 * forged[n] + \
                 32768 * nInc[n] + 65536 * cntInc[n])
inline canon() {
  if
  :: NKEY(1) < NKEY(0) || (NKEY(1) == NKEY(0) && ackEv[1] < ackEv[0]) ->
       tk = nE[0]; nE[0] = nE[1]; nE[1] = tk;
       tk = nA[0]; nA[0] = nA[1]; nA[1] = tk;
       tk = nSet[0]; nSet[0] = nSet[1]; nSet[1] = tk;
       tk = nGhost[0]; nGhost[0] = nGhost[1]; nGhost[1] = tk;
       tk = nInc[0]; nInc[0] = nInc[1]; nInc[1] = tk;
       tk = cntInc[0]; cntInc[0] = cntInc[1]; cntInc[1] = tk;
       tk = forged[0]; forged[0] = forged[1]; forged[1] = tk;
       tk = ackMax[1]; ackMax[1] = ackMax[5]; ackMax[5] = tk;
       tk = ackMax[2]; ackMax[2] = ackMax[6]; ackMax[6] = tk;
       tk = ackMax[3]; ackMax[3] = ackMax[7]; ackMax[7] = tk;
       ti = ackEv[0]; ackEv[0] = ackEv[1]; ackEv[1] = ti; ti = 0
  :: else -> skip
  fi
}
#else
inline canon() { skip }
#endif

/* ---------------- the two properties ---------------- */

/* Every node incarnation that wait counted still enforces a2 (the control plane never lifts it). */
#define HOLDS(n) (!done || nInc[n] != cntInc[n] || (nSet[n] & A2) != 0)
/* Never-forget: a node holds every id whose add it applied and whose delete it did not. */
#define KEEPS(n) ((nSet[n] & nGhost[n]) == nGhost[n])

HIDDEN byte acked_revocation_is_enforced = 1;
HIDDEN byte node_never_forgets = 1;

active proctype check_acked_enforced() {
end:
  atomic { !(HOLDS(0) && HOLDS(1)) ->
    acked_revocation_is_enforced = 0;
    assert(acked_revocation_is_enforced) }
}

active proctype check_never_forget() {
end:
  atomic { !(KEEPS(0) && KEEPS(1)) ->
    node_never_forgets = 0;
    assert(node_never_forgets) }
}

/* ---------------- coverage probes (COVER=n) ----------------
   A passing check means little if the interesting situations are never reached. Each probe
   asserts that one situation is unreachable, so check.sh --define COVER=n must FAIL, and its
   counterexample shows a run reaching it. */
#ifdef COVER
#if COVER == 1
#define PROBE (done)                                      /* wait(a2) completes */
#elif COVER == 2
#define PROBE (done && XE == 2)                           /* ... in an epoch begun after data loss */
#elif COVER == 3
#define PROBE (done && XE == 1 && nE[0] == 2 && nE[1] == 2)  /* both counted nodes merge-resync into a new epoch */
#elif COVER == 4
#define PROBE (done && pruned)                            /* the pruner raised the floor */
#elif COVER == 5
#define PROBE (done && X == 2)                            /* a2 landed at seq 2: a write was lost or rolled back */
#elif COVER == 6
#define PROBE (done && budget == 0)                       /* the adversary spent its whole budget */
#else
#define PROBE (0)
#endif
HIDDEN byte cover_target_unreachable = 1;
active proctype cover() {
end:
  atomic { PROBE -> cover_target_unreachable = 0; assert(cover_target_unreachable) }
}
#endif

/* ---------------- node steps ---------------- */

/* RevocationSet.apply of content c, verified at (nE[n], k): an add adds its id, a delete removes
   exactly the id it names; then (ACKEVENT) remember the event for the ack. */
inline apply(n, c, k) {
  if
  :: (c) == C_ADD_A1 -> printf("node %d:   applies add(a1) as (epoch %d, seq %d)\n", n, nE[n], k)
  :: (c) == C_DEL_A1 -> printf("node %d:   applies delete(a1) as (epoch %d, seq %d)\n", n, nE[n], k)
  :: (c) == C_ADD_A2 -> printf("node %d:   applies add(a2) as (epoch %d, seq %d)\n", n, nE[n], k)
  fi;
  if
  :: C_OP(c) == ADD -> nSet[n] = nSet[n] | C_ID(c); nGhost[n] = nGhost[n] | C_ID(c)
  :: else -> nSet[n] = nSet[n] & (3 - C_ID(c)); nGhost[n] = nGhost[n] & (3 - C_ID(c))
  fi;
#ifdef ACKEVENT
  if
  :: (c) == C_ADD_A2 -> ackEv[n] = ackEv[n] | BIT((nE[n] - 1) * 3 + (k) - 1)
  :: else -> skip
  fi;
#endif
  skip
}

/* The node's signed ack: (node id, epoch, applied seq). */
inline ack(n) {
  if
  :: ackMax[n * 4 + nE[n]] < nA[n] -> ackMax[n * 4 + nE[n]] = nA[n]
  :: else -> skip
  fi
}

proctype Node(byte n) {
end:
  do
  /* RevocationSync.check (with .catchUp, or .resync on a newer epoch; RevocationSet.applyAll;
     RevocationSync.acknowledge): GET rev:head, judge it, read rev:log (A, head.seq], apply,
     ack. A missing or garbage head (head == 0), an older epoch or a rollback change nothing. */
  :: d_step { head != 0 ->
       th = head; tgo = 0;
       if
       :: HE(th) > nE[n] ->                    /* newer epoch: resync, merging */
            nE[n] = HE(th); nA[n] = 0; tgo = 1;
#ifdef BROKEN_MERGE
            nSet[n] = 0;                        /* the old bug: replace what the node holds */
#endif
            skip
       :: HE(th) == nE[n] && HS(th) > nA[n] -> tgo = 1     /* catchUp */
       :: else -> skip
       fi;
       if
       :: tgo ->
            tk = nA[n] + 1; tc = nA[n]; thole = 0;
            do
            :: tk > HS(th) -> break
            :: else ->
                 tr = rlog[tk];
                 if
                 :: VALID_AT(tr, tk, nE[n]) ->
                      apply(n, EV_C(tr), tk);
                      if :: !thole -> tc = tk :: else -> skip fi
                 :: else ->                     /* missing or invalid: a hole unless under the floor */
                      if :: !thole && tk <= HF(th) -> tc = tk :: else -> thole = 1 fi
                 fi;
                 tk++
            od;
#ifdef BROKEN_HOLES
            tc = HS(th);
#endif
            nA[n] = tc;
            ack(n);
            printf("node %d: check read head (epoch %d, seq %d, floor %d); applied seq is now %d; acks it\n",
                   n, HE(th), HS(th), HF(th), nA[n])
       :: else -> skip
       fi;
       canon();
       th = 0; tk = 0; tc = 0; tr = 0; thole = 0; tgo = 0 }

  /* RevocationSync.receive: a live event: honest, replayed by the adversary, or never arriving
     (pub/sub may lose it). Applied only if it verifies and is exactly A+1; a gap is left to
     check(), and a replay (seq <= A) does nothing. */
  :: atomic {
       if
       :: LIVE_OK(n, C_ADD_A1) -> tc = C_ADD_A1
       :: LIVE_OK(n, C_DEL_A1) -> tc = C_DEL_A1
       :: LIVE_OK(n, C_ADD_A2) -> tc = C_ADD_A2
       fi;
       printf("node %d: receives a live pub/sub event\n", n);
       nA[n] = nA[n] + 1; apply(n, tc, nA[n]); ack(n);
       canon();
       tc = 0; tk = 0 }

  /* Restart: memory lost; it comes back as a new node id and syncs like any new node. */
  :: atomic { restarts < RESTARTS ->
       restarts++; nInc[n] = nInc[n] + 1;
       nE[n] = 0; nA[n] = 0; nSet[n] = 0; nGhost[n] = 0;
#ifndef SAMEID
       /* its acks carried the old node id, which is no longer in the live set */
       ackMax[n * 4 + 1] = 0; ackMax[n * 4 + 2] = 0; ackMax[n * 4 + 3] = 0;
       ackEv[n] = 0; forged[n] = 0;
#endif
       printf("node %d: restarted as incarnation %d\n", n, nInc[n]);
       canon(); tk = 0 }
  od
}

/* ---------------- control plane ---------------- */

/* The writer's memory, per mode (see WRITE_OK). */
#if defined(IMPLWRITER)
inline MEMORY_NEW_EPOCH() { hE = nep; hS = 0 }
inline MEMORY_SIGNED(E, s, c) { hE = E; hS = s }          /* the head it read verified */
inline MEMORY_LANDED(E, s) { hE = E; hS = s }
#elif defined(BROKEN_STATELESS)
inline MEMORY_NEW_EPOCH() { skip }
inline MEMORY_SIGNED(E, s, c) { skip }
inline MEMORY_LANDED(E, s) { skip }
#else
inline MEMORY_NEW_EPOCH() { sE = nep; sS = 0; sOp = 3 }
inline MEMORY_SIGNED(E, s, c) { sE = E; sS = (s) + 1; sOp = c }
inline MEMORY_LANDED(E, s) { skip }
#endif

/* Trail narration: what = 0 signed, 1 landed, 2 failed. */
inline say(what, c, E, k) {
  if
  :: what == 0 && c == C_ADD_A1 -> printf("CP: signs add(a1) as (epoch %d, seq %d)\n", E, k)
  :: what == 0 && c == C_DEL_A1 -> printf("CP: signs delete(a1) as (epoch %d, seq %d)\n", E, k)
  :: what == 0 && c == C_ADD_A2 -> printf("CP: signs add(a2) as (epoch %d, seq %d)\n", E, k)
  :: what == 1 && c == C_ADD_A1 -> printf("CP: write of add(a1) landed at (epoch %d, seq %d)\n", E, k)
  :: what == 1 && c == C_DEL_A1 -> printf("CP: write of delete(a1) landed at (epoch %d, seq %d)\n", E, k)
  :: what == 1 && c == C_ADD_A2 -> printf("CP: write of add(a2) landed at (epoch %d, seq %d)\n", E, k)
  :: what == 2 && c == C_ADD_A1 -> printf("CP: write of add(a1) at (epoch %d, seq %d) failed (CAS)\n", E, k)
  :: what == 2 && c == C_DEL_A1 -> printf("CP: write of delete(a1) at (epoch %d, seq %d) failed (CAS)\n", E, k)
  :: what == 2 && c == C_ADD_A2 -> printf("CP: write of add(a2) at (epoch %d, seq %d) failed (CAS)\n", E, k)
  fi
}

active proctype ControlPlane() {
end:
  do
  /* RevocationStore.heartbeat or .write finding no head (RevocationWriter.baseForWriting,
     .missing or .invalid): a new epoch, seq 0, floor 0. */
  :: atomic { head == 0 && nep < MAXEP ->
       nep++;
       head = HD(nep, 0, 0); hdSigned = hdSigned | BIT(head); revseq = 0;
       MEMORY_NEW_EPOCH();
       printf("CP: no head in Redis: starts epoch %d (seq 0, floor 0)\n", nep) }

#ifdef IMPLWRITER
  /* RevocationWriter.baseForWriting finding a rolled-back head: a new epoch, log emptied. */
  :: atomic { !wph && head != 0 && ROLLED_BACK(head) && nep < MAXEP ->
       printf("CP: head (epoch %d, seq %d) is behind what it saw: rollback, starts epoch %d, empties the log\n", HE(head), HS(head), nep + 1);
       nep++;
       head = HD(nep, 0, 0); hdSigned = hdSigned | BIT(head); revseq = 0;
       rlog[1] = 0; rlog[2] = 0; rlog[3] = 0;
       MEMORY_NEW_EPOCH() }
#endif

  /* RevocationStore.write, first half (RevocationWriter.commit: baseForWriting, then
     RevocationEvent.signed / RevocationHead.signed): read the head (E, s, F), sign event
     (E, s+1) and head (E, s+1, F). Both count as seen by the adversary from now on: they go to
     Redis as script arguments, which MONITOR shows even when the script refuses them. */
  :: atomic { !wph && op < 3 && head != 0 && HS(head) < MAXSEQ && WRITE_OK(head, op) ->
       wrh = head; wph = 1;
       evSigned = evSigned | BIT(EV(HE(wrh), HS(wrh) + 1, op));
       hdSigned = hdSigned | BIT(HD(HE(wrh), HS(wrh) + 1, HF(wrh)));
       MEMORY_SIGNED(HE(wrh), HS(wrh), op);
       say(0, op, HE(wrh), HS(wrh) + 1) }

  /* The Lua write script (RevocationCommit.script): if rev:seq == s and rev:head is still the
     head read, append the event under score s+1, set the new head and rev:seq, publish.
     Otherwise the write fails: it is retried, or (GIVEUP) the next change is written instead,
     as when the admin moves on or the next group commit goes ahead. */
  :: atomic { wph ->
       if
       :: head == wrh && revseq == HS(wrh) ->
            rlog[HS(wrh) + 1] = EV(HE(wrh), HS(wrh) + 1, op);
            head = HD(HE(wrh), HS(wrh) + 1, HF(wrh));
            revseq = HS(wrh) + 1;
            MEMORY_LANDED(HE(wrh), HS(wrh) + 1);
            say(1, op, HE(wrh), HS(wrh) + 1);
            if
            :: op == C_DEL_A1 -> lifted = 1
            :: op == C_ADD_A2 -> X = HS(wrh) + 1; XE = HE(wrh)
            :: else -> skip
            fi;
            op++
       :: else ->
            say(2, op, HE(wrh), HS(wrh) + 1);
#if defined(IMPLWRITER) && defined(FIXBURN)
            bE = HE(wrh); bS = HS(wrh) + 1;
#endif
            if
            :: skip                            /* retry the same change */
            :: GIVEUP && op < C_ADD_A2 ->      /* the admin moves on to the next change */
                 op++; printf("CP: the admin gives up on that change and sends the next one\n")
            fi
       fi;
       wph = 0; wrh = 0 }

  /* PropagationTracker.wait(X) (with RevocationStore.acknowledgements): complete once every
     live node has an authenticated ack (its live id, epoch XE, applied seq >= X). */
  :: atomic { X != 0 && !done && COUNTED(0) && COUNTED(1) ->
       done = 1; cntInc[0] = nInc[0]; cntInc[1] = nInc[1];
       printf("CP: wait(add(a2) at epoch %d, seq %d) returns complete: both nodes acked\n", XE, X);
       canon(); tk = 0 }

  /* RevocationStore.prune (RevocationWriter.raiseFloor, then the removals), as one step: after
     the lift, raise the floor over the verified, expired (a1) entries directly above the current
     floor, sign that head, remove them. Expiry is judged from the signed entry, never from the
     unauthenticated rev:expiry index. */
  :: d_step { !pruned && lifted && head != 0 && HF(head) + 1 <= HS(head) &&
              VALID_AT(rlog[HF(head) + 1], HF(head) + 1, HE(head)) &&
              EV_C(rlog[HF(head) + 1]) != C_ADD_A2 ->
       th = HF(head); tk = th + 1;
       do
       :: tk <= HS(head) && VALID_AT(rlog[tk], tk, HE(head)) && EV_C(rlog[tk]) != C_ADD_A2 ->
            tk++
       :: else -> break
       od;
       tk--;                                   /* the new floor */
       head = HD(HE(head), HS(head), tk); hdSigned = hdSigned | BIT(head); pruned = 1;
       do
       :: th < tk -> th++; rlog[th] = 0
       :: else -> break
       od;
       printf("CP pruner: signs head (epoch %d, seq %d, floor %d), removes the expired entries under it\n", HE(head), HS(head), tk);
       th = 0; tk = 0 }
  od
}

/* ---------------- the adversary: owns Redis, not the secret ---------------- */

/* An action that changes nothing costs nothing (so it adds no state). */
active proctype Adversary() {
end:
  do
  /* SET rev:head to any head ever signed, or DEL it. */
  :: atomic { budget > 0 ->
       tr = 0;                         /* choose 0 (delete) or any signed head */
       do
       :: (hdSigned >> (tr + 1)) != 0 -> tr++
       :: tr == 0 || (hdSigned & BIT(tr)) != 0 -> break
       od;
       if
       :: tr != head && tr == 0 -> budget--; head = 0; printf("ADV: deletes rev:head\n")
       :: tr != head && tr != 0 -> budget--; head = tr;
            printf("ADV: sets rev:head to the old signed head (epoch %d, seq %d, floor %d)\n", HE(tr), HS(tr), HF(tr))
       :: else -> skip
       fi;
       tr = 0 }

  /* Put any signed event, or nothing, under a score of rev:log. */
  :: atomic { budget > 0 ->
       if
       :: tk = 1
       :: tk = 2
       :: tk = 3
       fi;
       tr = 0;                         /* choose 0 (remove) or any signed event */
       do
       :: (evSigned >> (tr + 1)) != 0 -> tr++
       :: tr == 0 || (evSigned & BIT(tr)) != 0 -> break
       od;
       if
       :: tr != rlog[tk] -> budget--; rlog[tk] = tr;
            if
            :: tr == 0 -> printf("ADV: removes the rev:log entry under score %d\n", tk)
            :: tr != 0 && EV_C(tr) == C_ADD_A1 ->
                 printf("ADV: puts the signed add(a1) of (epoch %d, seq %d) under rev:log score %d\n", EV_E(tr), EV_S(tr), tk)
            :: tr != 0 && EV_C(tr) == C_DEL_A1 ->
                 printf("ADV: puts the signed delete(a1) of (epoch %d, seq %d) under rev:log score %d\n", EV_E(tr), EV_S(tr), tk)
            :: tr != 0 && EV_C(tr) == C_ADD_A2 ->
                 printf("ADV: puts the signed add(a2) of (epoch %d, seq %d) under rev:log score %d\n", EV_E(tr), EV_S(tr), tk)
            fi
       :: else -> skip
       fi;
       tk = 0; tr = 0 }

  /* SET rev:seq. Only its equality with the seq of the head the writer read matters; a value
     no head carries would only block writes, which never helps break safety. */
  :: atomic { budget > 0 ->
       if
       :: tr = 0
       :: tr = 1
       :: tr = 2
       :: tr = 3
       fi;
       if
       :: tr != revseq -> budget--; revseq = tr; printf("ADV: sets rev:seq to %d\n", tr)
       :: else -> skip
       fi;
       tr = 0 }

  /* FLUSHALL, or Redis restarting without its data. */
  :: atomic { budget > 0 && (head != 0 || rlog[1] != 0 || rlog[2] != 0 || rlog[3] != 0 || revseq != 0) ->
       budget--; head = 0; rlog[1] = 0; rlog[2] = 0; rlog[3] = 0; revseq = 0;
       printf("ADV: FLUSHALL\n") }

#ifdef BROKEN_ACKMAC
  /* Acks are unauthenticated: write one saying a node applied everything. */
  :: atomic {
       if
       :: budget > 0 && !forged[0] -> tr = 0
       :: budget > 0 && !forged[1] -> tr = 1
       fi;
       budget--; forged[tr] = 1; printf("ADV: forges an ack for node %d (epoch and seq of its choice)\n", tr);
       canon(); tr = 0; tk = 0 }
#endif
  od
}

init {
  atomic { run Node(0); run Node(1) }
}
