"""Where the compiled batched engine keeps its state: the columns of its state arrays.

The kernel (`distsim.sim.batched_kernel`) keeps all its state in a few integer and float arrays
rather than objects, so that numba compiles it to plain loads and stores. Each array's columns
(or rows) are named here, once; the kernel addresses them only by these names. numba treats
these module-level integers as compile-time constants.

Conventions: `ri`/`rf` are per request (one row each), `ii`/`fi` per instance and `pi` per pool
(one column each, a field per row), `st` holds scalars, `pf` a pool's step-time parameters (one
row per pool, its columns named per model below).
"""

from __future__ import annotations

# Event kinds.
EV_START = 0  # an instance process starts (URGENT)
EV_START_ARRIVALS = 1  # the arrival process starts (URGENT)
EV_WAKE = 2  # a sleeping instance was notified
EV_STEP = 3  # an instance's step timeout
EV_ARRIVAL = 4  # the arrival process's timeout
EV_T_START = 5  # a KV-transfer process starts (URGENT)
EV_T_GRANT = 6  # a link request was granted
EV_T_DONE = 7  # a transfer's timeout
EV_RELEASE = 8  # a link release event
EV_FAIL = 9  # a failed process: SimPy re-raises its exception here
URGENT = 0
NORMAL = 1
PRIO_SHIFT = 56  # heap key = priority << 56 | creation order

# Per-request integers, ri[request, field] (a request's fields share a cache line or two).
R_PROMPT = 0
R_OUTPUT = 1
R_GEN = 2  # tokens generated
R_LEFT = 3  # prompt (or recompute) tokens still to prefill on the current instance
R_PDONE = 4  # tokens of the current prefill already in the cache
R_KV = 5  # KV tokens held or reserved on the current instance
R_NEEDS_T = 6  # 1 while the prompt's KV has to move to the decode instance
R_SOURCE = 7  # prefill instance (global index) holding the prompt's KV until the transfer ends
R_NEXT = 8  # the instance list (prefilling or decoding) the sequence is on, doubly linked
R_PREV = 9
R_CHUNK = 10  # prompt tokens in the current step (0: not a prefill chunk of it)
R_ORD = 11  # when it joined its instance's running list (the reference's list order)
R_TNEXT = 12  # a link's FCFS request queue (singly linked)
R_LINK = 13  # the decode instance (global index) whose link carries the transfer
R_BNEXT = 14  # a prefill instance's current batch (singly linked)
R_QNEXT = 15  # a routed instance's own FCFS queue (singly linked)
NRI = 16

# Per-request floats, rf[request, field].
F_QUEUED = 0
F_TSTART = 1
F_FIRST = 2
F_DONE = 3
NRF = 4

# Per-instance integers, ii[field, instance].
I_POOL = 0
I_LOCAL = 1  # index within its pool (StepRecord.instance, the transfer log's link)
I_KIND = 2  # 0: monolithic or decode instance, 1: prefill instance
I_KV = 3  # KV tokens in use
I_SLEEP = 4  # 1 while waiting on a wake-up event (the reference's `wake is not None`)
I_TRIG = 5  # 1 once that event was triggered
I_COUNT = 6  # running sequences (the reference's `running`): prefilling + decoding
I_ORD = 7  # counter giving running sequences their order
I_BLOCK = 8  # KV block, tokens (1: token-exact)
I_IN_T = 9  # transfers admitted, not yet arrived
I_USERS = 10  # link in use (0/1)
I_LQHEAD = 11  # link request queue
I_LQTAIL = 12
I_SNAP = 13  # prefill chunks in the step: the first of the prefilling list
I_SNAP_DEC = 14  # decodes in the step: the first of the decoding list
I_BHEAD = 15  # prefill batch
I_BTAIL = 16
I_BCOUNT = 17
I_FIRST_AT_PREFILL = 18
# The reference's running list, split in two lists that each keep its order: sequences with
# prompt left to prefill (list 0) and decoding ones (list 1); head, tail, length of list k at
# I_LISTS + 3 k.
I_LISTS = 19
I_PHEAD = 19
I_PTAIL = 20
I_NPRE = 21
I_DHEAD = 22
I_DTAIL = 23
I_NDEC = 24
I_ROUTING = 25  # its pool's routing code (RT_*)
I_QHEAD = 26  # routed pools: the instance's own queue (head, tail, length)
I_QTAIL = 27
I_QLEN = 28
I_LOAD = 29  # least_loaded: tokens of the requests routed here that have not left the pool
NII = 30

# Per-instance floats, fi[field, instance].
J_KV_INTEGRAL = 0
J_KV_SINCE = 1
J_CAP = 2
J_SHARE = 3  # the current step's GPU-seconds per sequence
NFI = 4

# Per-pool integers, pi[field, pool] (the first P_IN rows are inputs).
P_NINST = 0
P_FIRST = 1  # global index of its first instance
P_MBS = 2
P_BUDGET = 3  # -1: none
P_TP = 4
P_MODEL = 5
P_THRESHOLD = 6
P_PREFILL_CAP = 7  # unchunked prefill steps: most prompt tokens (-1: none)
P_BLOCK = 8  # KV block, tokens
P_ROUTING = 9  # RT_* below
P_RESERVE = 10  # KV tokens an admission must leave free (vLLM's watermark; 0: none)
P_IN = 11
P_QHEAD = 11  # the pool's FCFS queue, a ring buffer qbuf[pool] (central routing; a routed
# pool has no pool queue, and with `random` qbuf[pool, request] is the instance drawn for it)
P_QLEN = 12
P_JOINED = 13  # requests routed to its instances so far (round robin)
NPI = 14

# Routing codes (`routing` of the architecture, one per pool).
RT_CENTRAL = 0
RT_ROUND_ROBIN = 1
RT_RANDOM = 2
RT_LEAST_LOADED = 3
ROUTING_CODES = {"central": 0, "round_robin": 1, "random": 2, "least_loaded": 3}

# Step-time model codes and parameter layouts, pf[pool, k].
M_ROOFLINE = 0
M_PROFILE = 1
M_LINEAR = 2
NPARAM = 14

# Scalars, st[k].
S_HSIZE = 0
S_EID = 1
S_PREEMPTIONS = 2
S_RECOMPUTED = 3
S_NEXT_ARRIVAL = 4
S_NTRANSFERS = 5
S_ERROR = 6  # 1: a request did not fit
S_ERR_RID = 7
S_ERR_NEED = 8
S_ERR_POOL = 9
S_LOG = 10  # 1: record every step for a checker
S_NLOG_I = 11  # entries written (or wanted, if the buffer was too small) in each step log
S_NLOG_F = 12
S_NLOG_C = 13
S_NLOG_D = 14
S_EMIT_AT_PREFILL = 15  # 1: a prefill's end emits a token (output - 1 decode iterations)
NST = 16

# Step log rows (ints): pool, instance, kv tokens, chunks, decodes.
LOG_INTS = 5


# Step-time parameters, pf[pool, column], per model (see `fast_batched._step_params`).
# Roofline: every sub-expression that does not depend on the step, evaluated once.
RL_FLOPS_PER_TOKEN = 0  # 2 x parameters
RL_ATTENTION_FLOPS = 1  # 4 x layers x hidden, per (query, key) pair
RL_WEIGHT_BYTES = 2
RL_KV_BYTES_PER_TOKEN = 3
RL_FLOPS_PER_S = 4  # tensor_parallel x peak x MFU
RL_BYTES_PER_S = 5  # tensor_parallel x HBM bandwidth x MBU
RL_TENSOR_PARALLEL = 6
RL_RING_FACTOR = 7  # 2 (t - 1) / t
RL_HIDDEN = 8
RL_BYTES_PER_PARAM = 9
RL_ALLREDUCES = 10  # 2 x layers
RL_ALLREDUCE_LATENCY_S = 11
RL_INTERCONNECT_BYTES_PER_S = 12
RL_STEP_OVERHEAD_S = 13
# ProfileFit: three (a, b, c) fits in milliseconds at these offsets, then the ms -> s factor.
PF_PREFILL = 0
PF_DECODE_SMALL = 3
PF_DECODE_LARGE = 6
FIT_A = 0  # fixed term (added to an offset above)
FIT_B = 1  # per token (prefill) or per context token (decode)
FIT_C = 2  # per squared prompt token (prefill) or per sequence (decode)
PF_MS = 9
PF_OVERHEAD_S = 10
PF_OVERHEAD_PER_TOKEN_S = 11
# Linear.
LN_OVERHEAD_S = 0
LN_PREFILL_TOKENS_PER_S = 1
LN_DECODE_BASE_S = 2
LN_DECODE_PER_SEQ_S = 3
LN_KV_TOKEN_S = 4
