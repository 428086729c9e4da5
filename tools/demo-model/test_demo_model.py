#!/usr/bin/env python3
"""Checks of the demo-model tool and of the shipped model (CTest: demo_model_format).

- the params writer and reader round-trip byte for byte (several dtypes and ranks), and the
  reader rejects bad files (magic, truncation, lying counts, oversized ndim) with FormatError;
- pre-V2 arrays (u32 dims, no array magic) are read;
- the generic interpreter's convolution and pooling agree with naive loops;
- the shipped models/demo-shapes files load, and every sample photo in photos/expected.txt is
  classified as expected, with the probabilities of reference.txt (within 1e-4).
Exits 77 (CTest "skipped") when numpy or Pillow is missing.
"""

import os
import struct
import sys

try:
    import numpy as np
    from PIL import Image
except ImportError as e:  # pragma: no cover
    print('SKIP: demo-model checks need python3-numpy and python3-pil (%s)' % e)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, HERE)
import mxnet_format as mxf  # noqa: E402
import mxnet_forward as mxr  # noqa: E402

MODEL_DIR = os.path.join(HERE, '..', '..', 'models', 'demo-shapes')
failures = []


def check(cond, what):
    print('%s %s' % ('ok  ' if cond else 'FAIL', what))
    if not cond:
        failures.append(what)


def expect_format_error(data, what):
    try:
        mxf.parse_params(data)
    except mxf.FormatError as e:
        check(True, '%s rejected (%s)' % (what, e))
        return
    check(False, '%s rejected' % what)


def test_roundtrip():
    rng = np.random.RandomState(1)
    arrays = [('arg:w', rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
              ('arg:b', rng.standard_normal(4).astype(np.float32)),
              ('aux:mean', rng.standard_normal((2, 5)).astype(np.float64)),
              ('arg:h', rng.standard_normal(7).astype(np.float16)),
              ('arg:i', np.arange(6, dtype=np.int32).reshape(2, 3)),
              ('arg:u', np.arange(5, dtype=np.uint8))]
    data = mxf.params_bytes(arrays)
    back = mxf.parse_params(data)
    check([k for k, _ in back] == [k for k, _ in arrays], 'round trip keeps keys and order')
    check(all(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
              for (_, a), (_, b) in zip(arrays, back)), 'round trip keeps dtype, shape, bytes')
    check(mxf.params_bytes(back) == data, 'rewriting gives identical bytes')
    # Header of the first array, at the documented offsets.
    magic, _, count = struct.unpack_from('<QQQ', data, 0)
    amagic, stype, ndim = struct.unpack_from('<IiI', data, 24)
    dims = struct.unpack_from('<4q', data, 36)
    dev, dev_id, flag = struct.unpack_from('<iii', data, 68)
    check((magic, count, amagic, stype, ndim, dims, dev, dev_id, flag) ==
          (0x112, 6, 0xF993FAC9, 0, 4, (4, 3, 3, 3), 1, 0, 0), 'header layout as specified')
    expect_format_error(b'\x13\x01' + data[2:], 'bad list magic')
    expect_format_error(data[:-3], 'truncated key')
    expect_format_error(data[:200], 'truncated array data')
    expect_format_error(struct.pack('<QQQ', 0x112, 0, 1 << 40) + b'\0' * 16, 'huge array count')
    bad_ndim = bytearray(data)
    struct.pack_into('<I', bad_ndim, 32, 1000)
    expect_format_error(bytes(bad_ndim), 'ndim 1000')
    bad_dim = bytearray(data)
    struct.pack_into('<q', bad_dim, 36, 1 << 40)
    expect_format_error(bytes(bad_dim), 'dimension larger than the file')
    expect_format_error(data + b'x', 'trailing bytes')


def test_pre_v2():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = (struct.pack('<QQQ', 0x112, 0, 1) + struct.pack('<III', 2, 2, 3) +
            struct.pack('<iii', 1, 0, 0) + a.tobytes() + struct.pack('<Q', 1) +
            struct.pack('<Q', 5) + b'arg:x')
    back = mxf.parse_params(data)
    check(back[0][0] == 'arg:x' and np.array_equal(back[0][1], a), 'pre-V2 array read')


def test_operators():
    rng = np.random.RandomState(2)
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    attrs = {'kernel': '(3, 3)', 'stride': '(2, 2)', 'pad': '(1, 1)', 'num_filter': '3'}
    y = mxr._convolution(attrs, x, w, b)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros((1, 3, 3, 3), np.float64)
    for o in range(3):
        for i in range(3):
            for j in range(3):
                ref[0, o, i, j] = (xp[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * w[o]).sum() + b[o]
    check(y.shape == ref.shape and np.allclose(y, ref, atol=1e-5), 'convolution vs naive loop')
    p = mxr._pooling({'kernel': '(2, 2)', 'stride': '(2, 2)', 'pool_type': 'max',
                      'pooling_convention': 'full'}, x)
    check(p.shape == (1, 2, 3, 3) and p[0, 1, 2, 2] == x[0, 1, 4, 4:6].max(),
          'max pooling, full convention, edge window')
    p = mxr._pooling({'kernel': '(2, 2)', 'stride': '(2, 2)', 'pool_type': 'avg'}, x)
    check(p.shape == (1, 2, 2, 3) and np.isclose(p[0, 0, 1, 2], x[0, 0, 2:4, 4:6].mean()),
          'average pooling, valid convention')
    img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    check(np.array_equal(mxr.resize_bilinear_cv(img, 4, 6), img), 'bilinear resize identity')


def test_shipped_model():
    expected = os.path.join(MODEL_DIR, 'photos', 'expected.txt')
    if not os.path.exists(expected):
        check(False, 'shipped model present at %s' % MODEL_DIR)
        return
    model = mxr.Model(os.path.join(MODEL_DIR, 'shapes-symbol.json'),
                      os.path.join(MODEL_DIR, 'shapes-0000.params'))
    synset = mxr.read_synset(os.path.join(MODEL_DIR, 'synset.txt'))
    check(len(synset) == 8 and all(len(s.split(' ', 1)[0]) == 9 for s in synset),
          'synset has 8 ImageNet-form lines')
    refs = {}
    with open(os.path.join(MODEL_DIR, 'reference.txt')) as f:
        for line in f:
            if line.startswith('#') or not line.strip():
                continue
            name, resize, rank, cls, score = line.split()[:5]
            refs[(name, resize, int(rank))] = (int(cls), float(score))
    with open(expected) as f:
        rows = [l.rstrip('\n').split('\t') for l in f if l.strip() and not l.startswith('#')]
    check(len(rows) >= 6, 'at least 6 sample photos listed')
    for name, line in rows:
        with Image.open(os.path.join(MODEL_DIR, 'photos', name)) as img:
            check(img.size != (224, 224), '%s is not already 224x224' % name)
            for resize in ('cv', 'pil'):
                prob = model.run(mxr.preprocess(img, resize))[0]
                top = int(np.argmax(prob))
                check(synset[top] == line, '%s (%s resize) -> %s' % (name, resize, synset[top]))
                rc, rs = refs[(name, resize, 1)]
                check(rc == top and abs(rs - float(prob[top])) < 1e-4,
                      '%s (%s resize) matches reference.txt' % (name, resize))


def main():
    test_roundtrip()
    test_pre_v2()
    test_operators()
    test_shipped_model()
    if failures:
        print('%d check(s) failed' % len(failures))
        return 1
    print('all checks passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
