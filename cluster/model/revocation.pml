/*
 * Portcullis revocation-state protocol: a bounded Promela model, checked with spin.
 * Run it with cluster/model/check.sh; docs/model.md explains every part.
 *
 * One control plane (writer + heartbeat + PropagationTracker.wait), one pruner, two gateway
 * nodes, and an adversary that owns Redis but not the cluster secret. Signed material (events,
 * heads, acks) lives in tables that only honest processes append to; Redis holds references into
 * those tables, so the adversary can copy, move, replay and delete signed items but never make a
 * new one.
 *
 * Compile-time switches (check.sh --broken NAME gives -DBROKEN_NAME; --define NAME gives -DNAME):
 *   BROKEN_MERGE     a resync replaces the node's set instead of merging (the old bug)
 *   BROKEN_SEQMAC    the event MAC does not cover seq/epoch: any signed event verifies at any
 *                    score, in any epoch, and as any live sequence number
 *   BROKEN_ACKMAC    acks are not authenticated: the adversary can write one for any node
 *   BROKEN_HOLES     a node advances its applied sequence over missing log entries above the floor
 *   BROKEN_STATELESS the writer signs (E, s+1) for whatever authentic head Redis shows, and a
 *                    failed write may be followed by a different change (the design as briefed:
 *                    one (epoch, seq) can end up naming two different signed events)
 *   ACKEVENT         (alternative fix) an ack names the exact event applied (its MAC), and wait
 *                    counts a node only for an ack of the control plane's own event
 *   ADV_STEPS=n      adversary budget (default 4)
 */

#ifndef ADV_STEPS
#define ADV_STEPS 4
#endif

#define NODES    2
#define RESTARTS 1      /* node restarts in a run (all nodes together) */
#define INCS     2      /* incarnations per node slot: RESTARTS + 1 */
#define MAXSEQ   3      /* highest sequence number within an epoch */
#define MAXEP    3      /* epochs the control plane may create */
#define PRUNES   1      /* successful prunes in a run */
#define NEV      7      /* signed events, refs 1..NEV (fits the ACKEVENT bit mask) */
#define NHD      9      /* signed heads, refs 1..NHD */

/* revocation ids, as bits of a node's set */
#define A1 1
#define A2 2
/* event kinds */
#define ADD 1
#define DEL 2

/* ---------------- signed material (only honest processes append) ---------------- */

byte ne = 0;                  /* events signed so far */
byte ev_e[8];                 /* epoch the MAC binds */
byte ev_s[8];                 /* sequence the MAC binds */
byte ev_op[8];                /* ADD or DEL */
byte ev_id[8];                /* the revocation added, or the exact add a delete lifts */

byte nh = 0;                  /* heads signed so far */
byte hd_e[10];
byte hd_s[10];
byte hd_f[10];                /* floor: entries with seq <= floor may be missing */

/* ---------------- Redis (the adversary may rewrite all of it) ---------------- */

byte head = 0;                /* rev:head: 0 = missing or garbage, else a ref into hd_* */
byte rlog[4];                 /* rev:log: rlog[k] = ref of the event under score k (0 = none/garbage) */
byte revseq = 0;              /* rev:seq: the writer's counter, unauthenticated */
/* rev:acks:*: signed acks never disappear from the model. The adversary may delete acks, but
   fewer acks only make wait complete later, so keeping them all is the adversary's best case. */
byte ackMax[24];              /* [node][incarnation][epoch] -> highest seq acked (ACK_IX) */
byte ackEv[4];                /* ACKEVENT: [node][incarnation] -> bit r set = acked event r */
bool forged[2];               /* BROKEN_ACKMAC: an ack for this node was forged */

#define ACK_IX(n, i, e) ((n) * 12 + (i) * 4 + (e))

/* ---------------- control plane ---------------- */

byte nep = 0;                 /* epochs created; epoch numbers grow with creation time */
byte op = 0;                  /* next change: 0 add(a1), 1 delete(a1), 2 add(a2), 3 none left */
bool lifted = 0;              /* delete(a1) landed: a1's entries are expired, prunable */
byte X = 0;                   /* add(a2) landed at (XE, X) as event Xev */
byte XE = 0;
byte Xev = 0;
bool done = 0;                /* wait(X) returned complete */
byte cntInc[2];               /* the node incarnations that wait counted */
byte wph = 0;                 /* writer: 1 between reading the head and the CAS script */
byte wrh = 0;                 /* writer: the head it read */
byte wpe = 0;                 /* writer: the event it signed */
byte wnh = 0;                 /* writer: the new head it signed */
#ifndef BROKEN_STATELESS
/* The writer's memory: the highest (epoch, seq) it has signed an event for, and which change. */
byte sE = 0;
byte sS = 0;
byte sOp = 255;
#endif
byte pruned = 0;
byte prh = 0;                 /* pruner: the head it read (0 = idle) */
byte pF = 0;                  /* pruner: the new floor */
byte pnh = 0;                 /* pruner: the new head it signed */

#define OPKIND(o) ((o) == 1 -> DEL : ADD)
#define OPID(o)   ((o) == 2 -> A2 : A1)

#ifdef BROKEN_STATELESS
#define MAY_SIGN(E, k, o) (1)
#else
#define MAY_SIGN(E, k, o) ((E) > sE || ((E) == sE && ((k) > sS || ((k) == sS && (o) == sOp))))
#endif

/* ---------------- nodes ---------------- */

byte nE[2];                   /* epoch the node follows (0 = never synced) */
byte nA[2];                   /* applied sequence */
byte nSet[2];                 /* revocations in force at the node (bits) */
byte nGhost[2];               /* ids whose add the node applied and whose delete it did not */
byte nInc[2];                 /* incarnation: a restarted node is a new node id */
byte nPh[2];                  /* check(): 1 between reading the head and reading the log */
byte nRh[2];                  /* check(): the head read */
byte restarts = 0;

byte budget = ADV_STEPS;

/* scratch, always set before use inside one indivisible step; not part of the state */
hidden byte tk;
hidden byte tc;
hidden byte tr;
hidden byte th;
hidden byte thole;
hidden byte tgo;

/* ---------------- verification rules ---------------- */

/* A log entry under score k verifies for a node following epoch E. */
#ifdef BROKEN_SEQMAC
#define VALID_AT(r, k, E) ((r) != 0)
#define LIVE_OK(r, n)     (nA[n] < MAXSEQ)
#else
#define VALID_AT(r, k, E) ((r) != 0 && ev_s[r] == (k) && ev_e[r] == (E))
#define LIVE_OK(r, n)     (ev_e[r] == nE[n] && ev_s[r] == nA[n] + 1)
#endif

#define EXPIRED_AT(r, k, E) (VALID_AT(r, k, E) && ev_id[r] == A1)

#ifdef ACKEVENT
#define COUNTED(n) (forged[n] || (ackEv[(n) * 2 + nInc[n]] & (1 << Xev)) != 0)
#else
#define COUNTED(n) (forged[n] || ackMax[ACK_IX(n, nInc[n], XE)] >= X)
#endif

/* ---------------- the two properties ---------------- */

/* Every node incarnation that wait counted still enforces a2 (the control plane never lifts it). */
#define HOLDS(n) (!done || nInc[n] != cntInc[n] || (nSet[n] & A2) != 0)
/* Never-forget: a node holds every id whose add it applied and whose delete it did not. */
#define KEEPS(n) ((nSet[n] & nGhost[n]) == nGhost[n])

hidden byte acked_revocation_is_enforced = 1;
hidden byte node_never_forgets = 1;

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

/* ---------------- helpers ---------------- */

inline sign_event(E, S, O, I, out) {
  out = 1;
  do
  :: out > ne -> ne++; ev_e[ne] = E; ev_s[ne] = S; ev_op[ne] = O; ev_id[ne] = I; out = ne; break
  :: out <= ne && ev_e[out] == E && ev_s[out] == S && ev_op[out] == O && ev_id[out] == I -> break
  :: else -> out++
  od
}

inline sign_head(E, S, F, out) {
  out = 1;
  do
  :: out > nh -> nh++; hd_e[nh] = E; hd_s[nh] = S; hd_f[nh] = F; out = nh; break
  :: out <= nh && hd_e[out] == E && hd_s[out] == S && hd_f[out] == F -> break
  :: else -> out++
  od
}

/* RevocationSet.apply: an add adds its id; a delete removes exactly the id it names. */
inline apply(n, r) {
  if
  :: ev_op[r] == ADD -> nSet[n] = nSet[n] | ev_id[r]; nGhost[n] = nGhost[n] | ev_id[r]
  :: else -> nSet[n] = nSet[n] & (3 - ev_id[r]); nGhost[n] = nGhost[n] & (3 - ev_id[r])
  fi;
#ifdef ACKEVENT
  ackEv[n * 2 + nInc[n]] = ackEv[n * 2 + nInc[n]] | (1 << r);
#endif
  skip
}

/* The node's signed ack (node id incl. incarnation, epoch, applied seq). */
inline ack(n) {
  if
  :: ackMax[ACK_IX(n, nInc[n], nE[n])] < nA[n] -> ackMax[ACK_IX(n, nInc[n], nE[n])] = nA[n]
  :: else -> skip
  fi
}

/* ---------------- control plane ---------------- */

active proctype ControlPlane() {
end:
  do
  /* RevocationStore.heartbeat (and write) on a missing head: a new epoch, seq 0, floor 0. */
  :: atomic { head == 0 && nep < MAXEP && nh < NHD ->
       nep++;
       sign_head(nep, 0, 0, th);
       head = th; revseq = 0;
#ifndef BROKEN_STATELESS
       sE = nep; sS = 0; sOp = 255;
#endif
       printf("CP: head missing, new epoch %d\n", nep) }

  /* RevocationStore.write, client side: read the head, sign event (E, s+1) and head (E, s+1, F). */
  :: atomic { wph == 0 && op < 3 && head != 0 && hd_s[head] < MAXSEQ && ne < NEV && nh < NHD &&
              MAY_SIGN(hd_e[head], hd_s[head] + 1, op) ->
       wrh = head;
       sign_event(hd_e[wrh], hd_s[wrh] + 1, OPKIND(op), OPID(op), wpe);
       sign_head(hd_e[wrh], hd_s[wrh] + 1, hd_f[wrh], wnh);
#ifndef BROKEN_STATELESS
       sE = hd_e[wrh]; sS = hd_s[wrh] + 1; sOp = op;
#endif
       wph = 1;
       printf("CP: signed event #%d = op %d id %d at (epoch %d, seq %d)\n", wpe, ev_op[wpe], ev_id[wpe], ev_e[wpe], ev_s[wpe]) }

  /* The Lua write script: CAS on rev:seq and rev:head, then append, set head, publish. */
  :: atomic { wph == 1 ->
       if
       :: head == wrh && revseq == hd_s[wrh] ->
            rlog[hd_s[wrh] + 1] = wpe; head = wnh; revseq = hd_s[wrh] + 1;
            printf("CP: write of event #%d landed\n", wpe);
            if
            :: op == 1 -> lifted = 1
            :: op == 2 -> X = ev_s[wpe]; XE = ev_e[wpe]; Xev = wpe
            :: else -> skip
            fi;
            op++
       :: else ->
            printf("CP: write of event #%d failed (CAS)\n", wpe);
            if
            :: skip                    /* retry the same change */
            :: op < 2 -> op++          /* the admin gives up and sends the next change */
            fi
       fi;
       wph = 0; wrh = 0; wpe = 0; wnh = 0 }

  /* PropagationTracker.wait(X): complete when every live node has an authenticated ack. */
  :: atomic { X != 0 && !done && COUNTED(0) && COUNTED(1) ->
       done = 1; cntInc[0] = nInc[0]; cntInc[1] = nInc[1];
       printf("CP: wait for a2 at (epoch %d, seq %d) complete\n", XE, X) }
  od
}

/* RevocationStore.prune: raise the floor over verified expired entries, then remove them. */
active proctype Pruner() {
end:
  do
  :: atomic { prh == 0 && pruned < PRUNES && lifted && head != 0 && nh < NHD ->
       pF = hd_f[head]; tk = pF + 1;
       do
       :: tk <= hd_s[head] && EXPIRED_AT(rlog[tk], tk, hd_e[head]) -> pF = tk; tk++
       :: else -> break
       od;
       if
       :: pF > hd_f[head] ->
            prh = head;
            sign_head(hd_e[prh], hd_s[prh], pF, pnh);
            printf("Pruner: signed head floor %d\n", pF)
       :: else -> pF = 0
       fi;
       tk = 0 }
  :: atomic { prh != 0 ->
       if
       :: head == prh ->
            head = pnh; pruned++;
            tk = hd_f[prh] + 1;
            do
            :: tk <= pF -> rlog[tk] = 0; tk++
            :: else -> break
            od;
            printf("Pruner: floor %d set, entries removed\n", pF)
       :: else -> skip
       fi;
       prh = 0; pF = 0; pnh = 0; tk = 0 }
  od
}

/* ---------------- gateway nodes ---------------- */

proctype Node(byte n) {
end:
  do
  /* RevocationSync.check, part 1: GET rev:head (a missing or garbage head: nothing to do). */
  :: atomic { nPh[n] == 0 && head != 0 -> nRh[n] = head; nPh[n] = 1 }

  /* check, part 2: judge the head, read the log (A, head.seq], apply, ack. */
  :: d_step { nPh[n] == 1 ->
       th = nRh[n]; tgo = 0;
       if
       :: hd_e[th] > nE[n] ->                 /* newer epoch: resync (merge) */
            nE[n] = hd_e[th]; nA[n] = 0; tgo = 1;
#ifdef BROKEN_MERGE
            nSet[n] = 0;                        /* replace instead of merge */
#endif
            skip
       :: hd_e[th] == nE[n] && hd_s[th] > nA[n] -> tgo = 1    /* catchUp */
       :: else -> skip                        /* older epoch or rollback: tampering; or current */
       fi;
       if
       :: tgo ->
            tk = nA[n] + 1; tc = nA[n]; thole = 0;
            do
            :: tk > hd_s[th] -> break
            :: else ->
                 tr = rlog[tk];
                 if
                 :: VALID_AT(tr, tk, nE[n]) ->
                      apply(n, tr);
                      if :: !thole -> tc = tk :: else -> skip fi
                 :: else ->                   /* missing or invalid: a hole unless under the floor */
                      if :: !thole && tk <= hd_f[th] -> tc = tk :: else -> thole = 1 fi
                 fi;
                 tk++
            od;
#ifdef BROKEN_HOLES
            tc = hd_s[th];
#endif
            nA[n] = tc;
            ack(n)
       :: else -> skip
       fi;
       nPh[n] = 0; nRh[n] = 0; th = 0; tk = 0; tc = 0; tr = 0; thole = 0; tgo = 0 }

  /* RevocationSync.receive: a live event (honest, replayed by the adversary, or never: pub/sub
     may lose it). Applied only if it verifies and is exactly the next sequence; a gap is caught
     up by check(), a replay (seq <= A) does nothing. */
  :: atomic {
       if
       :: nE[n] != 0 && ne >= 1 && LIVE_OK(1, n) -> tr = 1
       :: nE[n] != 0 && ne >= 2 && LIVE_OK(2, n) -> tr = 2
       :: nE[n] != 0 && ne >= 3 && LIVE_OK(3, n) -> tr = 3
       :: nE[n] != 0 && ne >= 4 && LIVE_OK(4, n) -> tr = 4
       :: nE[n] != 0 && ne >= 5 && LIVE_OK(5, n) -> tr = 5
       :: nE[n] != 0 && ne >= 6 && LIVE_OK(6, n) -> tr = 6
       :: nE[n] != 0 && ne >= 7 && LIVE_OK(7, n) -> tr = 7
       fi;
       apply(n, tr); nA[n] = nA[n] + 1; ack(n);
       printf("node %d: live event #%d applied as seq %d\n", n, tr, nA[n]);
       tr = 0 }

  /* Restart: memory lost; a new node id (incarnation), synced from Redis like any new node. */
  :: atomic { restarts < RESTARTS ->
       restarts++; nInc[n] = nInc[n] + 1;
       nE[n] = 0; nA[n] = 0; nSet[n] = 0; nGhost[n] = 0; nPh[n] = 0; nRh[n] = 0;
       printf("node %d: restarted as incarnation %d\n", n, nInc[n]) }
  od
}

/* ---------------- the adversary: owns Redis, not the secret ---------------- */

active proctype Adversary() {
end:
  do
  /* SET rev:head to any head ever signed, or DEL it. */
  :: atomic {
       if
       :: budget > 0 -> tr = 0
       :: budget > 0 && nh >= 1 -> tr = 1
       :: budget > 0 && nh >= 2 -> tr = 2
       :: budget > 0 && nh >= 3 -> tr = 3
       :: budget > 0 && nh >= 4 -> tr = 4
       :: budget > 0 && nh >= 5 -> tr = 5
       :: budget > 0 && nh >= 6 -> tr = 6
       :: budget > 0 && nh >= 7 -> tr = 7
       :: budget > 0 && nh >= 8 -> tr = 8
       :: budget > 0 && nh >= 9 -> tr = 9
       fi;
       budget--; head = tr;
       printf("ADV: rev:head := head #%d\n", tr); tr = 0 }

  /* Put any signed event (or nothing) under any score of rev:log. */
  :: atomic {
       if
       :: budget > 0 -> tk = 1
       :: budget > 0 -> tk = 2
       :: budget > 0 -> tk = 3
       fi;
       if
       :: tr = 0
       :: ne >= 1 -> tr = 1
       :: ne >= 2 -> tr = 2
       :: ne >= 3 -> tr = 3
       :: ne >= 4 -> tr = 4
       :: ne >= 5 -> tr = 5
       :: ne >= 6 -> tr = 6
       :: ne >= 7 -> tr = 7
       fi;
       budget--; rlog[tk] = tr;
       printf("ADV: rev:log score %d := event #%d\n", tk, tr); tk = 0; tr = 0 }

  /* SET rev:seq to anything. */
  :: atomic {
       if
       :: budget > 0 -> tr = 0
       :: budget > 0 -> tr = 1
       :: budget > 0 -> tr = 2
       :: budget > 0 -> tr = 3
       :: budget > 0 -> tr = 4
       fi;
       budget--; revseq = tr;
       printf("ADV: rev:seq := %d\n", tr); tr = 0 }

  /* FLUSHALL (or Redis restarting without its data). */
  :: atomic { budget > 0 ->
       budget--; head = 0; rlog[1] = 0; rlog[2] = 0; rlog[3] = 0; revseq = 0;
       printf("ADV: FLUSHALL\n") }

#ifdef BROKEN_ACKMAC
  /* Unauthenticated acks: write one claiming any node applied everything. */
  :: atomic {
       if
       :: budget > 0 -> tr = 0
       :: budget > 0 -> tr = 1
       fi;
       budget--; forged[tr] = 1;
       printf("ADV: forged an ack for node %d\n", tr); tr = 0 }
#endif
  od
}

init {
  atomic { run Node(0); run Node(1) }
}
