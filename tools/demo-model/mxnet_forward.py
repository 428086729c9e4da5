"""Generic numpy forward pass of an MXNet symbol + params, and the seed's preprocessing.

This is the independent check of the files the demo-model tool writes: it knows nothing about
the training code; it parses the JSON graph and the params binary and runs the graph node by
node (float32, batch N, NCHW).

Seed preprocessing (SEED-COMPAT.md "Engine input"): decode as RGB, resize to 256x256 with
bilinear interpolation, centre-crop 224x224 (offset 16), values / 256, NCHW float32. Two
resize implementations are offered:
  - "cv": OpenCV INTER_LINEAR semantics (what the seed's C++ used through cv::resize): for each
    destination pixel the source coordinate is (d + 0.5) * in/out - 0.5, clamped to the image,
    four taps, result rounded to uint8. No antialiasing when shrinking.
  - "pil": Pillow's Image.resize(BILINEAR), which widens the triangle filter when shrinking
    (antialiased), result uint8.
They differ slightly on sharp edges; the model is trained on both.
"""

import numpy as np

from mxnet_format import FormatError, ints, read_params, read_symbol

RESIZE = 256
CROP = 224
SCALE = 256.0


def resize_bilinear_cv(img, out_h, out_w):
    """img: HxWx3 uint8 -> out_h x out_w x 3 uint8, OpenCV INTER_LINEAR semantics."""
    in_h, in_w = img.shape[:2]

    def taps(n_in, n_out):
        src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        src = np.clip(src, 0.0, n_in - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, fy = taps(in_h, out_h)
    x0, x1, fx = taps(in_w, out_w)
    f = img.astype(np.float32)
    top = f[y0] * (1 - fy)[:, None, None] + f[y1] * fy[:, None, None]
    out = top[:, x0] * (1 - fx)[None, :, None] + top[:, x1] * fx[None, :, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def preprocess(pil_image, resize='cv'):
    """PIL image -> 1x3x224x224 float32 (the seed's engine input)."""
    rgb = pil_image.convert('RGB')
    if resize == 'cv':
        arr = resize_bilinear_cv(np.asarray(rgb), RESIZE, RESIZE)
    elif resize == 'pil':
        from PIL import Image
        arr = np.asarray(rgb.resize((RESIZE, RESIZE), Image.BILINEAR))
    else:
        raise ValueError('resize must be "cv" or "pil"')
    off = (RESIZE - CROP) // 2
    crop = arr[off:off + CROP, off:off + CROP, :].astype(np.float32) / SCALE
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None])


def _windows(x, kh, kw, sh, sw, pad, fill, out_h, out_w):
    ph, pw = pad
    need_h = (out_h - 1) * sh + kh
    need_w = (out_w - 1) * sw + kw
    x = np.pad(x, ((0, 0), (0, 0), (ph, max(0, need_h - x.shape[2] - ph)),
                   (pw, max(0, need_w - x.shape[3] - pw))), constant_values=fill)
    v = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    return v[:, :, :(out_h - 1) * sh + 1:sh, :(out_w - 1) * sw + 1:sw]


def _pool_out(n, k, s, p, convention):
    if convention == 'full':
        return int(np.ceil((n + 2 * p - k) / s)) + 1
    return (n + 2 * p - k) // s + 1


def _convolution(a, x, w, b):
    for key in ('num_group',):
        if key in a and int(a[key]) != 1:
            raise FormatError('Convolution: %s=%s not supported here' % (key, a[key]))
    if 'dilate' in a and any(d != 1 for d in ints(a['dilate'])):
        raise FormatError('Convolution: dilate=%s not supported here' % a['dilate'])
    kh, kw = ints(a['kernel'])
    sh, sw = ints(a.get('stride', '(1, 1)'))
    ph, pw = ints(a.get('pad', '(0, 0)'))
    oh = (x.shape[2] + 2 * ph - kh) // sh + 1
    ow = (x.shape[3] + 2 * pw - kw) // sw + 1
    win = _windows(x, kh, kw, sh, sw, (ph, pw), 0.0, oh, ow)  # N C OH OW KH KW
    n, c = x.shape[:2]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
    y = cols @ w.reshape(w.shape[0], -1).T
    if b is not None:
        y = y + b
    return np.ascontiguousarray(y.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2))


def _pooling(a, x):
    ptype = a.get('pool_type', 'max')
    if a.get('global_pool', 'False') == 'True':
        if ptype == 'avg':
            return x.mean(axis=(2, 3), keepdims=True)
        if ptype == 'max':
            return x.max(axis=(2, 3), keepdims=True)
        raise FormatError('Pooling: pool_type %s not supported' % ptype)
    kh, kw = ints(a['kernel'])
    sh, sw = ints(a.get('stride', '(1, 1)'))
    ph, pw = ints(a.get('pad', '(0, 0)'))
    conv = a.get('pooling_convention', 'valid')
    oh = _pool_out(x.shape[2], kh, sh, ph, conv)
    ow = _pool_out(x.shape[3], kw, sw, pw, conv)
    if ptype == 'max':
        return _windows(x, kh, kw, sh, sw, (ph, pw), -np.inf, oh, ow).max(axis=(4, 5))
    if ptype == 'avg':
        if (ph or pw) and a.get('count_include_pad', 'True') != 'True':
            raise FormatError('Pooling: count_include_pad=False with padding not supported here')
        return _windows(x, kh, kw, sh, sw, (ph, pw), 0.0, oh, ow).mean(axis=(4, 5))
    raise FormatError('Pooling: pool_type %s not supported' % ptype)


class Model:
    """A loaded MXNet model: run(x) returns the head output (N x classes)."""

    def __init__(self, symbol_path, params_path):
        self.nodes, self.heads = read_symbol(symbol_path)
        self.params = {}
        for key, arr in read_params(params_path):
            self.params[key.split(':', 1)[1]] = arr.astype(np.float32)

    def run(self, x):
        vals = []
        for n in self.nodes:
            op, a = n['op'], n['attrs']
            ins = [vals[i] for i in n['inputs']]
            if op == 'null':
                if n['name'] == 'data':
                    v = x.astype(np.float32)
                elif n['name'] in self.params:
                    v = self.params[n['name']]
                elif n['name'].endswith('label'):
                    v = None  # SoftmaxOutput's label: unused at inference
                else:
                    raise FormatError('no parameter for input %s' % n['name'])
            elif op == 'Convolution':
                no_bias = a.get('no_bias', 'False') == 'True'
                v = _convolution(a, ins[0], ins[1], None if no_bias else ins[2])
            elif op == 'Activation':
                if a.get('act_type') != 'relu':
                    raise FormatError('Activation %s not supported here' % a.get('act_type'))
                v = np.maximum(ins[0], 0)
            elif op == 'Pooling':
                v = _pooling(a, ins[0])
            elif op == 'Flatten':
                v = ins[0].reshape(ins[0].shape[0], -1)
            elif op == 'FullyConnected':
                flat = ins[0].reshape(ins[0].shape[0], -1)
                v = flat @ ins[1].T
                if a.get('no_bias', 'False') != 'True':
                    v = v + ins[2]
            elif op in ('SoftmaxOutput', 'softmax', 'SoftmaxActivation'):
                z = ins[0] - ins[0].max(axis=1, keepdims=True)
                e = np.exp(z)
                v = e / e.sum(axis=1, keepdims=True)
            else:
                raise FormatError('operator %s not supported by this checker' % op)
            vals.append(v)
        return vals[self.heads[0]]


def read_synset(path):
    with open(path, 'r', encoding='utf-8') as f:
        return [line.rstrip('\n') for line in f if line.strip()]
