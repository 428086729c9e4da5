#!/usr/bin/env python3
"""Makes the bundled demo model (models/demo-shapes): data, training, MXNet files, checks.

    python3 tools/demo-model/make_demo_model.py --out models/demo-shapes

1. generates labelled photos of coloured shapes (shapes.py), preprocessed exactly as the seed's
   engine does (RGB, bilinear resize to 256x256, centre crop 224, /256, NCHW float32);
2. trains a small CNN by hand in numpy (cnn.py), whose first layer is a fixed 8x8 average pool;
3. writes synset.txt, shapes-symbol.json and shapes-0000.params in the seed's MXNet format
   (mxnet_format.py) and checks the params file round-trips byte for byte;
4. runs the written files with a generic graph interpreter (mxnet_forward.py) on held-out
   photos saved as real JPEG and PNG files, and reports the accuracy in README.md;
5. writes sample photos (photos/*.jpg|png, photos/expected.txt) and reference.txt (top-3
   probabilities per sample photo) for end-to-end tests and for cross-checking the C engine.

Everything is seeded: the same command on the same Debian packages gives the same files
(OpenBLAS is pinned to one thread so the float sums are in a fixed order).
Needs Debian's python3-numpy and python3-pil; nothing is downloaded.
"""

import os

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')  # before numpy: fixed summation order
os.environ.setdefault('OMP_NUM_THREADS', '1')

import argparse  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnn  # noqa: E402
import mxnet_format as mxf  # noqa: E402
import mxnet_forward as mxr  # noqa: E402
import shapes  # noqa: E402

PREFIX = 'shapes'
POOL_IN = 8  # the fixed first average pool: 224 -> 28


def pooled_input(img, resize):
    x = mxr.preprocess(img, resize)[0]  # 3 x 224 x 224
    s = mxr.CROP // POOL_IN
    return x.reshape(3, s, POOL_IN, s, POOL_IN).mean(axis=(2, 4))


def jpeg_roundtrip(img, quality):
    buf = io.BytesIO()
    img.save(buf, 'JPEG', quality=int(quality))
    buf.seek(0)
    return Image.open(buf).convert('RGB')


def make_training_set(rng, per_class):
    """Pooled 3x28x28 inputs; half the photos go through JPEG, half the resizes are PIL's."""
    n = per_class * len(shapes.CLASSES)
    x = np.zeros((n, 3, mxr.CROP // POOL_IN, mxr.CROP // POOL_IN), np.float32)
    y = np.zeros(n, np.int64)
    for i in range(n):
        cls = i % len(shapes.CLASSES)
        img, _ = shapes.render(cls, rng)
        if rng.rand() < 0.5:
            img = jpeg_roundtrip(img, rng.uniform(60, 95))
        x[i] = pooled_input(img, 'cv' if rng.rand() < 0.5 else 'pil')
        y[i] = cls
    return x, y


def build_symbol(params, classes):
    """The MXNet graph: data -> avg pool 8 -> 3 x (conv relu pool) -> flatten -> fc -> softmax."""
    b = mxf.SymbolBuilder()
    h = b.op('Pooling', 'pool_in', [b.var('data')], {
        'count_include_pad': 'True', 'global_pool': 'False', 'kernel': '(8, 8)',
        'layout': 'NCHW', 'pad': '(0, 0)', 'pool_type': 'avg', 'pooling_convention': 'valid',
        'stride': '(8, 8)'})
    layers = len(cnn.CHANNELS)
    for i in range(layers):
        w, bias = 'conv%d_weight' % i, 'conv%d_bias' % i
        h = b.op('Convolution', 'conv%d' % i, [h, b.var(w), b.var(bias)], {
            'dilate': '(1, 1)', 'kernel': '(3, 3)', 'layout': 'NCHW', 'no_bias': 'False',
            'num_filter': str(params[w].shape[0]), 'num_group': '1', 'pad': '(1, 1)',
            'stride': '(1, 1)'})
        h = b.op('Activation', 'relu%d' % i, [h], {'act_type': 'relu'})
        if i < layers - 1:
            h = b.op('Pooling', 'pool%d' % i, [h], {
                'global_pool': 'False', 'kernel': '(2, 2)', 'pad': '(0, 0)', 'pool_type': 'max',
                'pooling_convention': 'valid', 'stride': '(2, 2)'})
        else:
            h = b.op('Pooling', 'pool%d' % i, [h], {
                'global_pool': 'True', 'kernel': '(1, 1)', 'pad': '(0, 0)', 'pool_type': 'avg',
                'pooling_convention': 'valid', 'stride': '(1, 1)'})
    h = b.op('Flatten', 'flatten0', [h])
    h = b.op('FullyConnected', 'fc', [h, b.var('fc_weight'), b.var('fc_bias')], {
        'flatten': 'True', 'no_bias': 'False', 'num_hidden': str(classes)})
    h = b.op('SoftmaxOutput', 'softmax', [h, b.var('softmax_label')])
    return b.to_json(h)


def param_list(params):
    order = []
    for i in range(len(cnn.CHANNELS)):
        order += ['conv%d_weight' % i, 'conv%d_bias' % i]
    order += ['fc_weight', 'fc_bias']
    return [('arg:' + k, params[k].astype(np.float32)) for k in order]


def write_model(out, params):
    classes = len(shapes.CLASSES)
    with open(os.path.join(out, 'synset.txt'), 'w') as f:
        for c in range(classes):
            f.write(shapes.synset_line(c) + '\n')
    with open(os.path.join(out, PREFIX + '-symbol.json'), 'w') as f:
        f.write(build_symbol(params, classes))
    plist = param_list(params)
    path = os.path.join(out, PREFIX + '-0000.params')
    mxf.write_params(path, plist)
    back = mxf.read_params(path)  # round trip: same keys, shapes, bytes
    assert [k for k, _ in back] == [k for k, _ in plist]
    for (_, a), (_, b) in zip(plist, back):
        assert a.shape == b.shape and a.tobytes() == b.tobytes()
    with open(path, 'rb') as f:
        assert mxf.params_bytes(back) == f.read()


def load_model(out):
    return (mxr.Model(os.path.join(out, PREFIX + '-symbol.json'),
                      os.path.join(out, PREFIX + '-0000.params')),
            mxr.read_synset(os.path.join(out, 'synset.txt')))


def held_out_accuracy(model, rng, per_class, log):
    """Held-out photos written as real files (JPEG q 70..95 or PNG), read back, classified."""
    classes = len(shapes.CLASSES)
    n = per_class * classes
    confusion = {r: np.zeros((classes, classes), np.int64) for r in ('cv', 'pil')}
    kinds = {'jpg': [0, 0], 'png': [0, 0]}
    with tempfile.TemporaryDirectory() as tmp:
        batch = {'cv': [], 'pil': []}
        labels = []
        for i in range(n):
            cls = i % classes
            img, _ = shapes.render(cls, rng)
            ext = 'jpg' if i % 2 == 0 else 'png'
            path = os.path.join(tmp, 'p%d.%s' % (i, ext))
            if ext == 'jpg':
                img.save(path, 'JPEG', quality=int(rng.uniform(70, 95)))
            else:
                img.save(path, 'PNG')
            with Image.open(path) as f:
                for r in batch:
                    batch[r].append(mxr.preprocess(f, r)[0])
            labels.append((cls, ext))
            if len(labels) == 64 or i == n - 1:
                for r in batch:
                    pred = model.run(np.stack(batch[r])).argmax(axis=1)
                    for (c, e), p in zip(labels, pred):
                        confusion[r][c, p] += 1
                        if r == 'cv':
                            kinds[e][0] += int(c == p)
                            kinds[e][1] += 1
                    batch[r] = []
                labels = []
    acc = {r: np.trace(m) / m.sum() for r, m in confusion.items()}
    log('  held-out accuracy: cv-bilinear %.4f, PIL-bilinear %.4f (%d photos)' %
        (acc['cv'], acc['pil'], n))
    return acc, confusion, kinds


def top3(model, img, resize):
    prob = model.run(mxr.preprocess(img, resize))[0]
    order = np.argsort(-prob, kind='stable')[:3]
    return [(int(c), float(prob[c])) for c in order]


def make_samples(out, model, synset, seed, log):
    """One photo per class: alternate JPEG/PNG and sizes; keep only confident, small files."""
    pdir = os.path.join(out, 'photos')
    os.makedirs(pdir, exist_ok=True)
    for name in os.listdir(pdir):
        os.remove(os.path.join(pdir, name))
    rng = np.random.RandomState(seed)
    samples = []
    for cls in range(len(shapes.CLASSES)):
        ext = 'jpg' if cls % 2 == 0 else 'png'
        size = shapes.SIZES[cls % len(shapes.SIZES)]
        name = '%s.%s' % (shapes.file_stem(cls), ext)
        path = os.path.join(pdir, name)
        for attempt in range(50):
            # Little noise (none for PNG, which cannot compress it) keeps the files a few KB.
            img, _ = shapes.render(cls, rng, noise_max=3.0 if ext == 'jpg' else 0.0, size=size)
            if ext == 'jpg':
                img.save(path, 'JPEG', quality=85)
            else:
                img.save(path, 'PNG', optimize=True)
            with Image.open(path) as f:
                tops = {r: top3(model, f, r) for r in ('cv', 'pil')}
            ok = all(t[0][0] == cls and t[0][1] >= 0.9 for t in tops.values())
            if ok and os.path.getsize(path) <= 16 * 1024:
                break
        else:
            raise RuntimeError('no confident sample for class %d' % cls)
        samples.append((name, cls, tops, size, attempt))
        log('  %-20s %dx%d %5d bytes  top-1 %.4f (%d rejected candidates)' %
            (name, size[0], size[1], os.path.getsize(path), tops['cv'][0][1], attempt))
    with open(os.path.join(pdir, 'expected.txt'), 'w') as f:
        f.write('# photo<TAB>expected synset line (arg-max of the demo-shapes model)\n')
        for name, cls, _, _, _ in samples:
            f.write('%s\t%s\n' % (name, synset[cls]))
    with open(os.path.join(out, 'reference.txt'), 'w') as f:
        f.write('# Reference outputs of the demo-shapes model for photos/*, computed by the numpy\n'
                '# interpreter in tools/demo-model/mxnet_forward.py from the shipped files.\n'
                '# Preprocessing: decode (Pillow / libjpeg-turbo, libpng) as RGB, resize to\n'
                '# 256x256 bilinear, round to uint8, centre-crop 224x224 at offset 16, /256,\n'
                '# NCHW float32, batch 1. Two resizes:\n'
                '#   cv  = OpenCV INTER_LINEAR semantics (half-pixel centres, 4 taps, no\n'
                '#         antialiasing), numpy implementation resize_bilinear_cv;\n'
                '#   pil = Pillow Image.resize(BILINEAR) (antialiased triangle filter).\n'
                '# A C engine with its own bilinear resize will differ slightly (expect ~1e-3 on\n'
                '# the top scores); the arg-max must be the same.\n'
                '# Format: photo resize rank class_index score synset_line\n')
        for name, _, tops, _, _ in samples:
            for r in ('cv', 'pil'):
                for rank, (c, p) in enumerate(tops[r]):
                    f.write('%s %s %d %d %.6f %s\n' % (name, r, rank + 1, c, p, synset[c]))
    return samples


def write_readme(out, stats):
    s = stats
    classes = '\n'.join('| %d | `%s` |' % (i, shapes.synset_line(i))
                        for i in range(len(shapes.CLASSES)))
    conf = s['confusion']['cv']
    head = '| true \\ predicted | ' + ' | '.join(str(i) for i in range(len(conf))) + ' |'
    sep = '|---' * (len(conf) + 1) + '|'
    rows = '\n'.join('| %d | ' % i + ' | '.join(str(v) for v in row) + ' |'
                     for i, row in enumerate(conf))
    sizes = '\n'.join('| `%s` | %d |' % (n, b) for n, b in s['sizes'])
    text = f"""# demo-shapes: the bundled demo model

A small CNN that tells {len(shapes.CLASSES)} kinds of coloured shapes apart, in the seed demo's
MXNet format, made by the project itself (no downloaded weights or data). Install it like the
seed's flower model:

```sh
sospdemo client 127.0.0.1:28000 installmodel 1 models/demo-shapes/synset.txt \\
    models/demo-shapes/shapes-symbol.json models/demo-shapes/shapes-0000.params
sospdemo client 127.0.0.1:28000 inference 1 models/demo-shapes/photos/red-circle.jpg
```

## How it was made

`python3 tools/demo-model/make_demo_model.py --out models/demo-shapes` (seed {s['seed']},
a few minutes on one core) regenerates every file here; see
`docs/demo-model.md`. It generates {s['train']} training photos of one shape each (sizes
320x240, 300x300, 240x320, 400x300, 256x192; grey tinted backgrounds with a gradient and noise;
random position, size and rotation; half of them JPEG-compressed, half resized the OpenCV way
and half the Pillow way), trains the network below in numpy with Adam (batch 32, cosine
learning rate from 3e-3) for {s['epochs']} epochs, with batch normalisation after each
convolution during training that is folded into the convolution weights afterwards (so the
exported graph has no `BatchNorm`; training accuracy {s['train_acc'] * 100:.2f} %), writes the three model files, and then checks them with
an independent numpy interpreter of the symbol JSON and params binary.

## Classes (`synset.txt`)

| index | synset line |
|---|---|
{classes}

## Network (`shapes-symbol.json`)

`data` (1x3x224x224) → `Pooling` avg 8x8 stride 8 (→ 3x28x28) → `Convolution` 3x3 pad 1,
{cnn.CHANNELS[0]} filters → `Activation` relu → `Pooling` max 2x2 stride 2 → `Convolution` 3x3
pad 1, {cnn.CHANNELS[1]} → relu → max pool 2x2 → `Convolution` 3x3 pad 1, {cnn.CHANNELS[2]} → relu
→ `Pooling` global avg → `Flatten` → `FullyConnected` {len(shapes.CLASSES)} → `SoftmaxOutput`
(with the usual unbound `softmax_label` input). {s['nparams']} float32 weights, all `arg:`
keys, no `aux:`; `mxnet_version` 10500 (MXNet 1.5).

## Input (the seed's engine input)

Decode as RGB; resize to 256x256 bilinear; centre-crop 224x224 at offset 16; values /256;
NCHW float32; batch 1. The output is 8 probabilities; the answer is the synset line of the
arg-max.

## Accuracy

Held-out photos ({s['test']}, new seed, half saved as JPEG quality 70–95 and half as PNG, read
back from the files), classified from the shipped files by the numpy interpreter:

| resize used in preprocessing | accuracy |
|---|---|
| OpenCV-style bilinear (no antialias) | {s['acc']['cv'] * 100:.2f} % |
| Pillow bilinear (antialiased) | {s['acc']['pil'] * 100:.2f} % |

By file type (OpenCV-style resize): JPEG {s['kinds']['jpg'][0]}/{s['kinds']['jpg'][1]}, PNG
{s['kinds']['png'][0]}/{s['kinds']['png'][1]}.

Confusion matrix (OpenCV-style resize; rows true class, columns predicted):

{head}
{sep}
{rows}

## Files

| file | bytes |
|---|---|
{sizes}

`photos/` holds one sample photo per class (JPEG and PNG, not 224x224), chosen among generated
candidates so that both resizes give the right class with probability ≥ 0.9;
`photos/expected.txt` lists photo → expected synset line. `reference.txt` gives the top-3
probabilities of every sample photo under both resizes, for cross-checking the C engine.
"""
    with open(os.path.join(out, 'README.md'), 'w') as f:
        f.write(_reflow(text))


def _reflow(markdown, width=96):
    """Re-wraps the plain paragraphs of `markdown` (not tables, code or headings)."""
    out, in_code = [], False
    for block in markdown.split('\n\n'):
        first = block.lstrip('\n')[:3]
        if block.count('```') % 2:
            in_code = not in_code
        if in_code or first.startswith(('|', '#', '```')) or '```' in block:
            out.append(block)
        else:
            out.append(textwrap.fill(' '.join(block.split()), width, break_on_hyphens=False))
    return '\n\n'.join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True, help='output folder (models/demo-shapes)')
    ap.add_argument('--seed', type=int, default=2019)
    ap.add_argument('--train-per-class', type=int, default=750)
    ap.add_argument('--test-per-class', type=int, default=125)
    ap.add_argument('--epochs', type=int, default=12)
    args = ap.parse_args()
    t0 = time.time()

    def log(msg):
        print('[%6.1f s] %s' % (time.time() - t0, msg), flush=True)

    os.makedirs(args.out, exist_ok=True)
    rng = np.random.RandomState(args.seed)
    log('generating %d training photos' % (args.train_per_class * len(shapes.CLASSES)))
    x, y = make_training_set(rng, args.train_per_class)
    log('training (%d epochs, channels %s)' % (args.epochs, cnn.CHANNELS))
    params = cnn.init_params(rng, len(shapes.CLASSES))
    cnn.train(params, x, y, rng, args.epochs, log=log)
    params = cnn.fold_batchnorm(params, x[:3000])
    train_acc = float(np.mean(cnn.predict(params, x) == y))
    log('batch norm folded into the convolutions; training accuracy %.4f' % train_acc)
    log('writing %s' % args.out)
    write_model(args.out, params)
    model, synset = load_model(args.out)
    # The interpreter of the written files must compute what the training code computes.
    xs = np.stack([mxr.preprocess(shapes.render(c, rng)[0], 'cv')[0] for c in range(8)])
    pooled = xs.reshape(8, 3, 28, 8, 28, 8).mean(axis=(3, 5))
    ref = cnn.forward(params, pooled)
    ref = np.exp(ref - ref.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    diff = float(np.abs(model.run(xs) - ref).max())
    log('files vs training forward: max |diff| %.2e' % diff)
    assert diff < 1e-4
    log('held-out test from JPEG/PNG files')
    acc, confusion, kinds = held_out_accuracy(
        model, np.random.RandomState(args.seed + 1), args.test_per_class, log)
    log('sample photos')
    make_samples(args.out, model, synset, args.seed + 2, log)
    files = ['synset.txt', PREFIX + '-symbol.json', PREFIX + '-0000.params', 'reference.txt',
             'photos/expected.txt']
    files += ['photos/' + n for n in sorted(os.listdir(os.path.join(args.out, 'photos')))
              if n != 'expected.txt']
    sizes = [(n, os.path.getsize(os.path.join(args.out, n))) for n in files]
    stats = {'seed': args.seed, 'train_acc': train_acc, 'epochs': args.epochs,
             'train': len(y), 'test': args.test_per_class * len(shapes.CLASSES), 'acc': acc,
             'confusion': confusion, 'kinds': kinds, 'sizes': sizes,
             'nparams': sum(a.size for _, a in param_list(params))}
    write_readme(args.out, stats)
    total = sum(b for _, b in sizes)
    log('done: accuracy %.2f %% (cv) %.2f %% (pil), %d bytes shipped' %
        (acc['cv'] * 100, acc['pil'] * 100, total))
    return 0 if min(acc.values()) >= 0.95 else 1


if __name__ == '__main__':
    sys.exit(main())
