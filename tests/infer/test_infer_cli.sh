#!/bin/sh
# derecho-infer run and bench (issue 15 "more real models load"): `run` writes the raw outputs
# of a float32 NPY input as NPY, checked against SqueezeNet 1.1's reference output (1e-3
# relative, same arg-max) when ../shared/testdata exists; malformed inputs are refused; `bench`
# and `run` work on an MXNet model without a synset file ("class N" labels); `bench PHOTO` times
# whole photos and refuses a non-image.
# Usage: test_infer_cli.sh BUILD_DIR SOURCE_DIR
set -eu
BIN=$1/bin
SRC=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# an MXNet model without synset.txt beside it
cp "$SRC/models/demo-shapes/shapes-symbol.json" "$SRC/models/demo-shapes/shapes-0000.params" "$TMP/"
"$BIN/derecho-infer" bench --model "$TMP/shapes" --runs 1 --threads 1 >"$TMP/bench.txt" 2>&1 ||
  { cat "$TMP/bench.txt"; fail "bench without a synset"; }
grep -q "threads 1 batch 1:" "$TMP/bench.txt" || fail "bench printed no timing"
# with a photo: whole photos (decode + classify) too, at batch 1 and 8; a non-image is refused
"$BIN/derecho-infer" bench --model "$TMP/shapes" --runs 2 --threads 1 \
  "$SRC/models/demo-shapes/photos/red-circle.jpg" >"$TMP/bench.txt" 2>&1 ||
  { cat "$TMP/bench.txt"; fail "bench with a photo"; }
grep -q "threads 1 batch 8: .* photos/s, decoding included" "$TMP/bench.txt" ||
  { cat "$TMP/bench.txt"; fail "bench with a photo printed no photo timing"; }
if "$BIN/derecho-infer" bench --model "$TMP/shapes" --runs 1 --threads 1 "$TMP/shapes-symbol.json" \
    >"$TMP/bench.txt" 2>&1; then
  fail "bench accepted a photo that is not an image"
fi
if "$BIN/derecho-infer" classify --model "$TMP/shapes" "$SRC/models/demo-shapes/photos/red-circle.jpg" \
    >"$TMP/c.txt" 2>&1; then
  fail "classify without a synset should be refused"
fi
grep -q "cannot read the labels" "$TMP/c.txt" || fail "classify: no clear message"

# malformed NPY inputs: refused with a message, exit 1
printf 'not an npy file' >"$TMP/bad.npy"
if "$BIN/derecho-infer" run --model "$TMP/shapes" --input "$TMP/bad.npy" --output "$TMP/o.npy" \
    >"$TMP/r.txt" 2>&1; then fail "run accepted a non-NPY input"; fi
grep -q "not an NPY file" "$TMP/r.txt" || fail "run: no clear message for a non-NPY input"
if "$BIN/derecho-infer" run --model "$TMP/shapes" --input "$TMP/bad.npy" >"$TMP/r.txt" 2>&1; then
  fail "run without --output"
fi
grep -q "run needs --input" "$TMP/r.txt" || fail "run: no clear message without --output"

# a wrong shape for the model
python3 - "$TMP/wrong.npy" <<'PY'
import struct, sys
h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 5, 5), }"
h += ' ' * (64 - (10 + len(h) + 1) % 64) + '\n'
open(sys.argv[1], 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() +
                              struct.pack('<75f', *([0.5] * 75)))
PY
if "$BIN/derecho-infer" run --model "$TMP/shapes" --input "$TMP/wrong.npy" --output "$TMP/o.npy" \
    >"$TMP/r.txt" 2>&1; then fail "run accepted a wrong shape"; fi
grep -q "want shape" "$TMP/r.txt" || fail "run: no clear message for a wrong shape"

DATA=$SRC/../shared/testdata/onnx/squeezenet1.1/test_data_set_0
if [ ! -f "$DATA/input_0.npy" ]; then
  echo "SKIP: $DATA not found; the reference-output check of run is skipped"
  exit 77
fi
for model in "$SRC/../shared/testdata/onnx/squeezenet1.1/squeezenet1.1.onnx" \
             "$SRC/../shared/testdata/mxnet/squeezenet1.1/squeezenet1.1"; do
  "$BIN/derecho-infer" run --model "$model" --input "$DATA/input_0.npy" --output "$TMP/out.npy" \
    >"$TMP/r.txt" 2>&1 || { cat "$TMP/r.txt"; fail "run $model"; }
  python3 - "$TMP/out.npy" "$DATA/output_0.npy" <<'PY' || fail "run $model: outputs differ"
import struct, sys
def load(p):
    b = open(p, 'rb').read()
    assert b[:6] == b'\x93NUMPY', p
    hl = struct.unpack('<H', b[8:10])[0]
    n = (len(b) - 10 - hl) // 4
    return list(struct.unpack('<%df' % n, b[10 + hl:]))
got, ref = load(sys.argv[1]), load(sys.argv[2])
assert len(got) == len(ref) == 1000, (len(got), len(ref))
worst = max(abs(g - r) / (1 + abs(r)) for g, r in zip(got, ref))
am = lambda v: max(range(len(v)), key=v.__getitem__)
print('max relative difference %.2e, arg-max %d (reference %d)' % (worst, am(got), am(ref)))
sys.exit(0 if worst < 1e-3 and am(got) == am(ref) else 1)
PY
done
echo "PASS"
