# Sourced by the script tests and benches that run the real binaries on a tiny world.
#   make_tiny_world DUET DIR   writes DIR/data (a small Shapes world) and DIR/base/model
#                              (10 pretraining steps): seconds, enough for the service to run
#   free_ports N               prints the first of N consecutive free loopback ports

make_tiny_world() {
  local duet="$1" dir="$2"
  "$duet" world make-data --out="$dir/data" --sft_pairs=256 --rl_prompts=32 --rl_images=32 \
    --eval_per_category=4 --codebook_size=64 > /dev/null
  "$duet" pretrain --data="$dir/data" --out="$dir/base" --steps=10 --batch_size=16 \
    --checkpoint_every=10 > /dev/null 2>&1
}

free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randint(20000, 60000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(base); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
}
