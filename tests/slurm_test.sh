#!/usr/bin/env bash
# The Slurm scripts (deploy/slurm/) on a real single-node Slurm, with the real binaries on
# loopback. The test starts its own munged (temporary key and socket), slurmctld and
# slurmd (a private slurm.conf: free ports, state, spool and logs in a temporary folder,
# proctrack/linuxproc, no cgroups, no accounting), then submits the scripts unmodified,
# configured through their DUET_* variables:
#   stop    duet.sbatch on a tiny world, and workers.sbatch (DUET_JOB: it waits for the
#           learner's address in the job's comment) adding a rollout worker; once that
#           worker registered and a step is done, `scancel --signal=TERM` of the worker
#           job: the worker deregisters, the job ends COMPLETED with exit 0. Then
#           `scancel --batch --signal=TERM` of the run (the path of the time limit's
#           --signal=B:TERM@600): the batch shell hands SIGTERM to the learner's step,
#           the learner finishes its step, checkpoints and writes final_state.json; the
#           workers leave; the job ends COMPLETED with exit 0;
#   resume  duet.sbatch again on the same folder: the learner resumes from that
#           checkpoint; workers.sbatch, submitted once the resumed run trains, adds a
#           rollout worker (DUET_JOB: the address from the job's comment); both jobs end
#           COMPLETED with exit 0, the run reaches the recipe's steps, metrics.jsonl has
#           every step once, and every worker, the added one included, confirmed the
#           learner's final checksum.
# Needs root and the packages slurmctld, slurmd, slurm-client and munge
# (deploy/local/install-deps.sh): without them the test fails, it does not skip.
# Not covered: several nodes, cgroup process tracking and limits, accounting (slurmdbd).
# Usage: tests/slurm_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/tiny_world.sh"
BIN="$(cd "$1" && pwd)"
SRC="$(cd "$2" && pwd)"
fail() { echo "slurm_test: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || fail "needs root (slurmd starts the job's processes); CI runs as root"
for c in munged mungekey slurmctld slurmd sbatch scontrol sinfo squeue scancel; do
  command -v "$c" > /dev/null || fail "$c is missing: run deploy/local/install-deps.sh (slurmctld slurmd slurm-client munge)"
done
# When this itself runs inside a Slurm job, its variables must not leak into ours.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^SLURM_' || true)

TMP="$(mktemp -d /tmp/duet-slurm.XXXXXX)"
chmod 755 "$TMP"
export SLURM_CONF="$TMP/slurm.conf"
DAEMONS=()
cleanup() {
  set +e
  # Jobs first (slurmd would leave their slurmstepd and processes behind), then the
  # daemons, then whatever still carries this test's SLURM_CONF (only ours do).
  scancel --quiet --user="$(id -un)" > /dev/null 2>&1
  for _ in $(seq 50); do [[ -z "$(squeue --noheader 2>/dev/null)" ]] && break; sleep 0.2; done
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do kill -TERM "${DAEMONS[i]}" 2>/dev/null; done
  for p in "${DAEMONS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  for d in /proc/[0-9]*; do
    if grep -qzx "SLURM_CONF=$SLURM_CONF" "$d/environ" 2>/dev/null; then kill -9 "${d#/proc/}" 2>/dev/null; fi
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
# logs: the daemons' log tails, for a failure.
logs() {
  for f in "$TMP"/log/*; do echo "== $f"; tail -n 20 "$f"; done >&2
}

# munge: a fresh key and a private socket; Slurm finds it through AuthInfo.
mkdir -p "$TMP/munge" "$TMP/log" "$TMP/state" "$TMP/spool"
mungekey --create --keyfile="$TMP/munge/munge.key" > /dev/null
munged --foreground --force --key-file="$TMP/munge/munge.key" --socket="$TMP/munge/socket" \
  --pid-file="$TMP/munge/munged.pid" --seed-file="$TMP/munge/seed" --log-file="$TMP/log/munged.log" \
  > "$TMP/log/munged.out" 2>&1 &
DAEMONS+=("$!")

NODE="$(hostname -s)"
CPUS=$(nproc)
# The jobs need 5 tasks of one CPU at a time (the run, then the run and the added worker);
# a smaller machine is declared bigger (config_overrides): the processes mostly wait.
((CPUS >= 8)) || CPUS=8
PORT=$(free_ports 2)
: > "$TMP/plugstack.conf"
cat > "$SLURM_CONF" <<EOF
ClusterName=duettest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$TMP/munge/socket
PlugStackConfig=$TMP/plugstack.conf
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=600
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/log/slurmctld.log
SlurmdLogFile=$TMP/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
for _ in $(seq 50); do [[ -S "$TMP/munge/socket" ]] && break; sleep 0.1; done
[[ -S "$TMP/munge/socket" ]] || { logs; fail "munged did not start"; }
slurmctld -D -f "$SLURM_CONF" > "$TMP/log/slurmctld.out" 2>&1 &
DAEMONS+=("$!")
slurmd -D -f "$SLURM_CONF" -N "$NODE" > "$TMP/log/slurmd.out" 2>&1 &
DAEMONS+=("$!")

# The tiny world while the daemons start.
make_tiny_world "$BIN/tools/duet" "$TMP"
STEPS=10
# Reward kinds other than the defaults: the scorer step of duet.sbatch passes no reward
# flag, so it computes these only because the learner sends them (issue 15).
tiny_recipe "$TMP/recipe.yaml" "$STEPS" 3 'self_reward: {image: pmi, caption: joint}'

for _ in $(seq 300); do
  [[ "$(sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null)" == idle ]] && break
  sleep 0.1
done
[[ "$(sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null)" == idle ]] || { logs; sinfo; fail "node $NODE not idle after 30 s"; }

# The scripts' settings: the build tree, the tiny world, free ports (the learner's gRPC
# port is picked by the learner: 0).
PORTS=$(free_ports 8)
export DUET_BIN="$BIN" DUET_RECIPE="$TMP/recipe.yaml" DUET_MODEL="$TMP/base/model" DUET_DATA="$TMP/data" \
  DUET_OUT="$TMP/out" DUET_PORT=0 DUET_METRICS_PORT="$PORTS" DUET_WORKER_GRACE=10
RUN="$TMP/out/run"
cd "$TMP"  # the submit folder: nothing is read relative to it

state_of() { scontrol --oneliner show job "$1" | sed -nE 's/.*JobState=([A-Z_]+).*/\1/p'; }
# finished JOB: waits (at most 120 s) until the job ends, then checks COMPLETED, exit 0.
finished() {
  local job="$1" state=""
  for _ in $(seq 1200); do
    state="$(state_of "$job")"
    case "$state" in PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED) sleep 0.1 ;; *) break ;; esac
  done
  local info; info="$(scontrol --oneliner show job "$job")"
  if [[ "$state" != COMPLETED || "$info" != *" ExitCode=0:0 "* ]]; then
    tail -n 40 "$TMP/job-$job.out" >&2 || true
    logs
    fail "job $job ended $state, $(grep -oE 'ExitCode=[0-9:]+' <<< "$info"), not COMPLETED with 0:0"
  fi
}
# wait_steps N: until the run's metrics.jsonl has N lines (at most 120 s).
wait_steps() {
  for _ in $(seq 1200); do
    [[ -f "$RUN/metrics.jsonl" && $(wc -l < "$RUN/metrics.jsonl") -ge $1 ]] && return 0
    sleep 0.1
  done
  tail -n 40 "$TMP"/job-*.out >&2 || true
  fail "fewer than $1 steps after 120 s"
}
# check_run STEPS [WORKER...]: final_state.json at STEPS, a checkpoint of it, every step
# once in metrics.jsonl, every worker (and each named one) on the learner's checksum.
check_run() {
  python3 - "$RUN" "$@" <<'PY'
import json, os, sys
run, steps, named = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
state = json.load(open(os.path.join(run, "final_state.json")))
assert state["step"] == steps and state["policy_version"] == steps, state
latest = open(os.path.join(run, "checkpoints", "LATEST")).read().strip()
assert latest == "step-%08d" % steps, latest
assert os.path.isfile(os.path.join(run, "checkpoints", latest, "state.json")), latest
lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
assert [l["step"] for l in lines] == list(range(1, steps + 1)), [l["step"] for l in lines]
assert len(state["workers"]) >= 3, state["workers"]
for w in state["workers"]:
    assert w["checksum"] == state["checksum"] and w["policy_version"] == steps, (w, state["checksum"])
names = [w["name"] for w in state["workers"]]
for n in named:
    assert n in names, (n, names)
PY
}

# wait_log FILE PATTERN: until FILE has a line matching PATTERN (at most 120 s).
wait_log() {
  for _ in $(seq 1200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  tail -n 30 "$1" >&2 || true
  fail "no '$2' in $1 after 120 s"
}

# stop: workers.sbatch submitted with the run adds a rollout worker, which leaves on
# `scancel --signal=TERM`; then a graceful stop of the run mid-way.
JOB=$(sbatch --parsable --output="$TMP/job-%j.out" "$SRC/deploy/slurm/duet.sbatch")
WJOB=$(DUET_JOB="$JOB" DUET_METRICS_PORT=$((PORTS + 6)) \
  sbatch --parsable --output="$TMP/job-%j.out" "$SRC/deploy/slurm/workers.sbatch")
wait_log "$TMP/job-$WJOB.out" "registered as rollout-$WJOB.0"
wait_steps 1
scancel --signal=TERM "$WJOB"
finished "$WJOB"
grep -q "rollout-$WJOB.0: deregistered" "$TMP/job-$WJOB.out" || fail "stop: the added worker did not deregister"
echo "stop: worker job $WJOB added a rollout worker and COMPLETED on scancel --signal=TERM"
scancel --batch --signal=TERM "$JOB"
finished "$JOB"
STOPPED=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["step"])' "$RUN/final_state.json")
((STOPPED >= 1 && STOPPED < STEPS)) || fail "stop: the run ended at step $STOPPED, not mid-run"
check_run "$STOPPED" || { tail -n 40 "$TMP/job-$JOB.out"; fail "stop: run state"; }
grep -q "signal 15: finishing the step" "$TMP/job-$JOB.out" || fail "stop: the learner did not get SIGTERM"
grep -q "the run's rewards: image pmi, caption joint" "$TMP/job-$JOB.out" || fail "the scorer did not take the recipe's rewards"
[[ $(grep -c "worker exiting cleanly" "$TMP/job-$JOB.out") -eq 3 ]] || { tail -n 30 "$TMP/job-$JOB.out"; fail "stop: not every worker left cleanly"; }
echo "stop: job $JOB COMPLETED, stopped and checkpointed at step $STOPPED of $STEPS"

# resume: the same folder, and a rollout worker added by workers.sbatch. The resumed
# learner waits for it (3 rollout workers: the job's 2 and the added one); without that a
# fast machine finished the few steps left before the added worker's job started.
JOB=$(DUET_MIN_ROLLOUT_WORKERS=3 sbatch --parsable --output="$TMP/job-%j.out" "$SRC/deploy/slurm/duet.sbatch")
WJOB=$(DUET_JOB="$JOB" DUET_METRICS_PORT=$((PORTS + 6)) \
  sbatch --parsable --output="$TMP/job-%j.out" "$SRC/deploy/slurm/workers.sbatch")
wait_steps $((STOPPED + 1))
finished "$JOB"
finished "$WJOB"
grep -q "resumed from .*step-$(printf %08d "$STOPPED")" "$TMP/job-$JOB.out" || fail "resume: the learner did not resume from step $STOPPED"
check_run "$STEPS" "rollout-$WJOB.0" || { tail -n 40 "$TMP/job-$JOB.out" "$TMP/job-$WJOB.out"; fail "resume: run state"; }
grep -q "registered as rollout-$WJOB.0" "$TMP/job-$WJOB.out" || fail "resume: the added worker never registered"
[[ -z "$(ls "$TMP/out/prometheus")" ]] || fail "Prometheus targets left behind: $(ls "$TMP/out/prometheus")"
echo "resume: job $JOB COMPLETED at step $STEPS; worker job $WJOB COMPLETED, its worker on the final checksum"
echo "slurm test ok (${SECONDS} s)"
