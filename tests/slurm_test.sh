#!/usr/bin/env bash
# The Slurm scripts (deploy/slurm/) on a real single-node Slurm, with the real binaries on
# loopback. The test starts its own munged (temporary key and socket), slurmctld and
# slurmd (a private slurm.conf: free ports, state, spool and logs in a temporary folder,
# proctrack/linuxproc, no cgroups, no accounting), then submits the scripts unmodified,
# configured through their DUET_* variables (ports: the scripts' defaults, which the
# processes pick themselves):
#   stop    duet.sbatch on a tiny world, and workers.sbatch (DUET_JOB: it waits for the
#           learner's address in the job's comment) adding a rollout worker; once that
#           worker registered, each of the 5 processes' Prometheus targets names a
#           distinct port that answers /metrics (curl) with its role's metrics; once a
#           step is done, `scancel --signal=TERM` of the worker job: the worker
#           deregisters, the job ends COMPLETED with exit 0. Then
#           `scancel --batch --signal=TERM` of the run (the path of the time limit's
#           --signal=B:TERM@600): the batch shell hands SIGTERM to the learner's step,
#           the learner finishes its step, checkpoints and writes final_state.json; the
#           workers leave; the job ends COMPLETED with exit 0;
#   resume  duet.sbatch again on the same folder: the learner resumes from that
#           checkpoint; workers.sbatch, submitted once the resumed run trains, adds a
#           rollout worker (DUET_JOB: the address from the job's comment); both jobs end
#           COMPLETED with exit 0, the run reaches the recipe's steps, metrics.jsonl has
#           every step once, and every worker, the added one included, confirmed the
#           learner's final checksum;
#   two jobs at once on the one node: beside the resumed run, a second duet.sbatch with
#           the default DUET_OUT (out/slurm-<jobid>) and its own workers.sbatch. Both
#           learners wait for their added worker (DUET_MIN_ROLLOUT_WORKERS=3), so while
#           both jobs run the 8 processes' targets are read and scraped: 8 distinct ports,
#           each answering /metrics with its role's metrics. Both runs then finish the
#           recipe, all four jobs COMPLETED with exit 0.
# Logs, in every phase: each process's lines are in its own file, $DUET_OUT/logs/<jobid>/
# learner.log, rollout-<task>.log, scorer-<task>.log, and only there: the batch output
# holds the scripts' lines. At the end no Prometheus target or port file is left behind.
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
# The jobs need 10 tasks of one CPU at a time (two runs of 4 and an added worker each);
# a smaller machine is declared bigger (config_overrides): the processes mostly wait.
((CPUS >= 12)) || CPUS=12
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
# Enough steps that the stop phase's checks (5 targets scraped, the worker job's logs)
# end before the run does: at 10 the run sometimes finished first (CI, a loaded machine).
STEPS=30
# Reward kinds other than the defaults: the scorer step of duet.sbatch passes no reward
# flag, so it computes these only because the learner sends them (issue 15).
tiny_recipe "$TMP/recipe.yaml" "$STEPS" 3 'self_reward: {image: pmi, caption: joint}'

for _ in $(seq 300); do
  [[ "$(sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null)" == idle ]] && break
  sleep 0.1
done
[[ "$(sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null)" == idle ]] || { logs; sinfo; fail "node $NODE not idle after 30 s"; }

# The scripts' settings: the build tree, the tiny world, the run's folder. Ports are the
# scripts' defaults: the processes pick free ones (learner gRPC, /metrics, Gloo).
export DUET_BIN="$BIN" DUET_RECIPE="$TMP/recipe.yaml" DUET_MODEL="$TMP/base/model" DUET_DATA="$TMP/data" \
  DUET_OUT="$TMP/out" DUET_WORKER_GRACE=10
RUN="$TMP/out/run"
# The submit folder: nothing is read relative to it; a job without DUET_OUT writes its
# default out/slurm-<jobid> here.
cd "$TMP"

# show JOB OUT: the job's batch output and the tails of its processes' logs, for a failure.
show() {
  tail -n 40 "$TMP/job-$1.out" >&2 || true
  for f in "$2/logs/$1"/*.log; do [[ -e "$f" ]] && { echo "== $f" >&2; tail -n 30 "$f" >&2; }; done
  return 0
}
state_of() { scontrol --oneliner show job "$1" | sed -nE 's/.*JobState=([A-Z_]+).*/\1/p'; }
# finished JOB [OUT]: waits (at most 120 s) until the job ends, then checks COMPLETED, exit 0.
finished() {
  local job="$1" state=""
  for _ in $(seq 1200); do
    state="$(state_of "$job")"
    case "$state" in PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED) sleep 0.1 ;; *) break ;; esac
  done
  local info; info="$(scontrol --oneliner show job "$job")"
  if [[ "$state" != COMPLETED || "$info" != *" ExitCode=0:0 "* ]]; then
    show "$job" "${2:-$TMP/out}"
    logs
    fail "job $job ended $state, $(grep -oE 'ExitCode=[0-9:]+' <<< "$info"), not COMPLETED with 0:0"
  fi
}
# wait_steps RUN N: until RUN/metrics.jsonl has N lines (at most 120 s).
wait_steps() {
  for _ in $(seq 1200); do
    [[ -f "$1/metrics.jsonl" && $(wc -l < "$1/metrics.jsonl") -ge $2 ]] && return 0
    sleep 0.1
  done
  tail -n 40 "$TMP"/job-*.out >&2 || true
  fail "fewer than $2 steps in $1 after 120 s"
}
# check_run RUN STEPS [WORKER...]: final_state.json at STEPS, a checkpoint of it, every step
# once in metrics.jsonl, every worker (and each named one) on the learner's checksum.
check_run() {
  python3 - "$@" <<'PY'
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

# scrape_targets N DIR...: waits (at most 120 s) until the DIRs hold N Prometheus targets
# (*.json), then reads each: one target HOST:PORT whose job label is duet-<role> and whose
# file is named <role>-<slurm_job label>..., and curl's GET http://HOST:PORT/metrics must
# answer with that role's duet_build_info. The N ports must differ (one node). Leaves the
# ports in SCRAPED.
SCRAPED=()
scrape_targets() {
  local want="$1" files=() f d
  shift
  for _ in $(seq 1200); do
    files=()
    for d in "$@"; do for f in "$d"/*.json; do [[ -e "$f" ]] && files+=("$f"); done; done
    ((${#files[@]} >= want)) && break
    sleep 0.1
  done
  ((${#files[@]} == want)) || fail "targets: ${#files[@]} in $*, not $want: ${files[*]}"
  local job slurm_job addr role name body
  SCRAPED=()
  for f in "${files[@]}"; do
    read -r job slurm_job addr < <(python3 -c '
import json, sys
groups = json.load(open(sys.argv[1]))
assert len(groups) == 1 and len(groups[0]["targets"]) == 1, groups
print(groups[0]["labels"]["job"], groups[0]["labels"]["slurm_job"], groups[0]["targets"][0])' "$f") ||
      fail "target $f: not one file_sd group of one target: $(cat "$f")"
    role="${job#duet-}"
    name="$(basename "$f")"
    [[ "$name" == "$role-$slurm_job".json || "$name" == "$role-$slurm_job"[.-]* ]] ||
      fail "target $f: labels job=$job slurm_job=$slurm_job do not match the file"
    body="$(curl -sf --max-time 10 "http://$addr/metrics")" || fail "target $f: $addr does not answer /metrics"
    grep -q "^duet_build_info{.*role=\"$role\"" <<< "$body" || fail "target $f: $addr serves no $role metrics"
    SCRAPED+=("${addr##*:}")
  done
  [[ $(printf '%s\n' "${SCRAPED[@]}" | sort -u | wc -l) -eq $want ]] || fail "targets share ports: ${SCRAPED[*]}"
}

# check_logs JOB OUT ROLE:TASKS...: the job's processes logged into OUT/logs/JOB: the
# learner (ROLE learner) its steps, each worker task its registration as ROLE-JOB.<...>;
# no file holds another role's lines, and the batch output none of theirs.
check_logs() {
  local job="$1" out="$2" spec role tasks t f
  shift 2
  for spec in "$@"; do
    role="${spec%%:*}" tasks="${spec#*:}"
    if [[ "$role" == learner ]]; then
      f="$out/logs/$job/learner.log"
      grep -qE "^step [0-9]+/$STEPS " "$f" || { show "$job" "$out"; fail "$f: no learner steps"; }
      ! grep -q "registered as" "$f" || fail "$f: holds a worker's lines"
      continue
    fi
    for ((t = 0; t < tasks; t++)); do
      f="$out/logs/$job/$role-$t.log"
      grep -q "registered as $role-$job\." "$f" || { show "$job" "$out"; fail "$f: no registration of a $role worker"; }
      [[ -z "$(grep "registered as " "$f" | grep -v "registered as $role-$job\.")" ]] || fail "$f: holds another worker's lines"
      ! grep -qE "^step [0-9]+/" "$f" || fail "$f: holds the learner's lines"
    done
  done
  f="$TMP/job-$job.out"
  grep -qE "^(duet|workers)\.sbatch: " "$f" || fail "$f: not the script's output"
  ! grep -qE "registered as|^step [0-9]+/|^[IWEF][0-9]{4}" "$f" || { tail -n 20 "$f" >&2; fail "$f: holds a process's lines"; }
}

# stop: workers.sbatch submitted with the run adds a rollout worker, which leaves on
# `scancel --signal=TERM`; then a graceful stop of the run mid-way.
JOB=$(sbatch --parsable --output="$TMP/job-%j.out" "$SRC/deploy/slurm/duet.sbatch")
WJOB=$(DUET_JOB="$JOB" sbatch --parsable --output="$TMP/job-%j.out" "$SRC/deploy/slurm/workers.sbatch")
wait_log "$TMP/out/logs/$WJOB/rollout-0.log" "registered as rollout-$WJOB.0"
# Every process of both jobs serves /metrics where its target says: learner, 2 + 1 + 1 workers.
scrape_targets 5 "$TMP/out/prometheus"
wait_steps "$RUN" 1
echo "stop: 5 targets, each answering /metrics on its own port: ${SCRAPED[*]}"
scancel --signal=TERM "$WJOB"
finished "$WJOB"
grep -q "rollout-$WJOB.0: deregistered" "$TMP/out/logs/$WJOB/rollout-0.log" || fail "stop: the added worker did not deregister"
check_logs "$WJOB" "$TMP/out" rollout:1
echo "stop: worker job $WJOB added a rollout worker and COMPLETED on scancel --signal=TERM"
scancel --batch --signal=TERM "$JOB"
finished "$JOB"
STOPPED=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["step"])' "$RUN/final_state.json")
((STOPPED >= 1 && STOPPED < STEPS)) || fail "stop: the run ended at step $STOPPED, not mid-run"
check_run "$RUN" "$STOPPED" || { show "$JOB" "$TMP/out"; fail "stop: run state"; }
L="$TMP/out/logs/$JOB"
grep -q "signal 15: finishing the step" "$L/learner.log" || fail "stop: the learner did not get SIGTERM"
grep -q "the run's rewards: image pmi, caption joint" "$L/scorer-0.log" || fail "the scorer did not take the recipe's rewards"
[[ $(cat "$L"/rollout-*.log "$L"/scorer-*.log | grep -c "worker exiting cleanly") -eq 3 ]] ||
  { show "$JOB" "$TMP/out"; fail "stop: not every worker left cleanly"; }
check_logs "$JOB" "$TMP/out" learner:1 rollout:2 scorer:1
echo "stop: job $JOB COMPLETED, stopped and checkpointed at step $STOPPED of $STEPS; logs in $L"

# resume, and two jobs on one node at once: the same folder resumed, and beside it a
# fresh run (default DUET_OUT: out/slurm-<jobid> under the submit folder), each with a
# rollout worker added by workers.sbatch. Each learner waits for its added worker (3
# rollout workers); without that a fast machine finished the few steps left before the
# added worker's job started, and here it holds both jobs running while their targets
# are scraped.
JOB=$(DUET_MIN_ROLLOUT_WORKERS=3 sbatch --parsable --output="$TMP/job-%j.out" "$SRC/deploy/slurm/duet.sbatch")
JOB2=$(env -u DUET_OUT DUET_MIN_ROLLOUT_WORKERS=3 sbatch --parsable --output="$TMP/job-%j.out" \
  "$SRC/deploy/slurm/duet.sbatch")
OUT2="$TMP/out/slurm-$JOB2"
scrape_targets 8 "$TMP/out/prometheus" "$OUT2/prometheus"
echo "two jobs: $JOB and $JOB2 running on $NODE, 8 targets on 8 ports, each answering /metrics: ${SCRAPED[*]}"
[[ "$(state_of "$JOB")" == RUNNING && "$(state_of "$JOB2")" == RUNNING ]] || fail "two jobs: not both running"
WJOB=$(DUET_JOB="$JOB" sbatch --parsable --output="$TMP/job-%j.out" "$SRC/deploy/slurm/workers.sbatch")
WJOB2=$(env -u DUET_OUT DUET_JOB="$JOB2" sbatch --parsable --output="$TMP/job-%j.out" \
  "$SRC/deploy/slurm/workers.sbatch")
wait_steps "$RUN" $((STOPPED + 1))
finished "$JOB"
finished "$WJOB"
finished "$JOB2" "$OUT2"
finished "$WJOB2" "$OUT2"
grep -q "resumed from .*step-$(printf %08d "$STOPPED")" "$TMP/out/logs/$JOB/learner.log" ||
  fail "resume: the learner did not resume from step $STOPPED"
check_run "$RUN" "$STEPS" "rollout-$WJOB.0" || { show "$JOB" "$TMP/out"; show "$WJOB" "$TMP/out"; fail "resume: run state"; }
check_run "$OUT2/run" "$STEPS" "rollout-$WJOB2.0" || { show "$JOB2" "$OUT2"; show "$WJOB2" "$OUT2"; fail "second job: run state"; }
check_logs "$JOB" "$TMP/out" learner:1 rollout:2 scorer:1
check_logs "$WJOB" "$TMP/out" rollout:1
check_logs "$JOB2" "$OUT2" learner:1 rollout:2 scorer:1
check_logs "$WJOB2" "$OUT2" rollout:1
for d in "$TMP/out" "$OUT2"; do
  left="$(find "$d/prometheus" "$d/ports" -mindepth 1)"
  [[ -z "$left" ]] || fail "targets or port files left behind: $left"
done
echo "resume: job $JOB COMPLETED at step $STEPS; worker job $WJOB COMPLETED, its worker on the final checksum"
echo "two jobs: job $JOB2 (out $OUT2) and its worker job $WJOB2 COMPLETED beside it, at step $STEPS"
echo "slurm test ok (${SECONDS} s)"
