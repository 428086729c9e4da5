"""The demo model's small CNN: hand-written numpy forward/backward and Adam training.

Network (after the seed's preprocessing, 3x224x224):
    Pooling avg 8x8 stride 8          -> 3x28x28   (fixed, no weights: done once per image)
    Convolution 3x3 pad 1, C1 filters -> relu -> Pooling max 2x2 stride 2 -> C1x14x14
    Convolution 3x3 pad 1, C2 filters -> relu -> Pooling max 2x2 stride 2 -> C2x7x7
    Convolution 3x3 pad 1, C3 filters -> relu -> Pooling global avg        -> C3
    Flatten -> FullyConnected(classes) -> SoftmaxOutput
Training works on the 28x28 pooled inputs (the first Pooling has no parameters). During
training each convolution is followed by batch normalisation (batch statistics); afterwards
fold_batchnorm() folds it into the convolution's weights and bias with the exact statistics of
the training data, so the exported graph is plain Convolution -> Activation -> Pooling.
"""

import numpy as np

CHANNELS = (24, 48, 64)


def init_params(rng, classes, in_ch=3, channels=None):
    channels = channels or CHANNELS
    p = {}
    cin = in_ch
    for i, cout in enumerate(channels):
        fan_in = cin * 9
        p['conv%d_weight' % i] = (rng.standard_normal((cout, cin, 3, 3)) *
                                  np.sqrt(2.0 / fan_in)).astype(np.float32)
        p['conv%d_bias' % i] = np.zeros(cout, np.float32)
        p['bn%d_gamma' % i] = np.ones(cout, np.float32)
        p['bn%d_beta' % i] = np.zeros(cout, np.float32)
        cin = cout
    p['fc_weight'] = (rng.standard_normal((classes, cin)) * np.sqrt(1.0 / cin)).astype(np.float32)
    p['fc_bias'] = np.zeros(classes, np.float32)
    return p


def _im2col(x):
    """x: N C H W -> (N*H*W, C*9) columns of 3x3 pad-1 windows."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # N C H W 3 3
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)


def _col2im(dcols, shape):
    n, c, h, w = shape
    d = dcols.reshape(n, h, w, c, 3, 3)
    dxp = np.zeros((n, c, h + 2, w + 2), np.float32)
    for i in range(3):
        for j in range(3):
            dxp[:, :, i:i + h, j:j + w] += d[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, 1:-1, 1:-1]


def conv_forward(x, wt, b):
    n, _, h, w = x.shape
    cols = _im2col(x)
    y = cols @ wt.reshape(wt.shape[0], -1).T + b
    return y.reshape(n, h, w, -1).transpose(0, 3, 1, 2), cols


def conv_backward(dy, x_shape, cols, wt):
    n, o, h, w = dy.shape
    dyf = dy.transpose(0, 2, 3, 1).reshape(-1, o)
    dw = (dyf.T @ cols).reshape(wt.shape)
    db = dyf.sum(axis=0)
    dcols = dyf @ wt.reshape(o, -1)
    return _col2im(dcols, x_shape), dw, db


def maxpool_forward(x):
    n, c, h, w = x.shape
    r = x.reshape(n, c, h // 2, 2, w // 2, 2)
    y = r.max(axis=(3, 5))
    mask = (r == y[:, :, :, None, :, None])
    # Keep one winner per window (first in row-major order) so gradients are not doubled.
    flat = mask.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    first = np.zeros_like(flat)
    idx = flat.argmax(axis=4)
    np.put_along_axis(first, idx[..., None], True, axis=4)
    return y, (first, x.shape)


def maxpool_backward(dy, cache):
    first, shape = cache
    n, c, h, w = shape
    d = first * dy[..., None]
    d = d.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return d.reshape(shape).astype(np.float32)


BN_EPS = 1e-5


def _bn_forward(y, gamma, beta):
    """Batch normalisation over N, H, W with the batch's statistics (training only)."""
    mu = y.mean(axis=(0, 2, 3), keepdims=True)
    var = y.var(axis=(0, 2, 3), keepdims=True)
    inv = 1.0 / np.sqrt(var + BN_EPS)
    xhat = (y - mu) * inv
    return gamma[None, :, None, None] * xhat + beta[None, :, None, None], (xhat, inv)


def _bn_backward(dz, gamma, cache):
    xhat, inv = cache
    m = dz.shape[0] * dz.shape[2] * dz.shape[3]
    dgamma = (dz * xhat).sum(axis=(0, 2, 3))
    dbeta = dz.sum(axis=(0, 2, 3))
    dxhat = dz * gamma[None, :, None, None]
    dy = inv / m * (m * dxhat - dxhat.sum(axis=(0, 2, 3), keepdims=True) -
                    xhat * (dxhat * xhat).sum(axis=(0, 2, 3), keepdims=True))
    return dy.astype(np.float32), dgamma, dbeta


def forward(p, x, train=False):
    """x: N x 3 x 28 x 28 (pooled input). Returns logits (and caches when train).

    With train=True every convolution is followed by batch normalisation (batch statistics,
    parameters bn%d_gamma/beta); with train=False `p` must be folded (fold_batchnorm), so the
    network is exactly the exported graph: Convolution -> relu -> pooling.
    """
    caches = []
    h = x
    layers = len(CHANNELS)
    for i in range(layers):
        y, cols = conv_forward(h, p['conv%d_weight' % i], p['conv%d_bias' % i])
        bnc = None
        if train:
            y, bnc = _bn_forward(y, p['bn%d_gamma' % i], p['bn%d_beta' % i])
        a = np.maximum(y, 0)
        if i < layers - 1:
            out, pc = maxpool_forward(a)
        else:
            out, pc = a.mean(axis=(2, 3)), a.shape
        caches.append((h.shape, cols, y, pc, bnc))
        h = out
    logits = h @ p['fc_weight'].T + p['fc_bias']
    return (logits, (caches, h)) if train else logits


def loss_and_grads(p, x, labels):
    logits, (caches, feat) = forward(p, x, train=True)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    prob = e / e.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = -np.mean(np.log(prob[np.arange(n), labels] + 1e-12))
    dlog = prob.copy()
    dlog[np.arange(n), labels] -= 1
    dlog /= n
    g = {'fc_weight': dlog.T @ feat, 'fc_bias': dlog.sum(axis=0)}
    dh = dlog @ p['fc_weight']
    for i in reversed(range(len(CHANNELS))):
        x_shape, cols, y, pc, bnc = caches[i]
        if i == len(CHANNELS) - 1:
            _, _, hh, ww = pc
            da = np.broadcast_to(dh[:, :, None, None] / (hh * ww), pc).astype(np.float32)
        else:
            da = maxpool_backward(dh, pc)
        dy = da * (y > 0)
        dy, g['bn%d_gamma' % i], g['bn%d_beta' % i] = _bn_backward(dy, p['bn%d_gamma' % i], bnc)
        dh, g['conv%d_weight' % i], g['conv%d_bias' % i] = conv_backward(
            dy, x_shape, cols, p['conv%d_weight' % i])
    return loss, g


def fold_batchnorm(p, x, batch=500):
    """Returns inference parameters: each batch norm folded into its convolution, using the
    exact mean and variance of the pre-normalisation activations over `x` (layer by layer)."""
    q = {k: v.copy() for k, v in p.items() if not k.startswith('bn')}
    for i in range(len(CHANNELS)):
        s1 = s2 = 0.0
        count = 0
        for s in range(0, x.shape[0], batch):
            h = x[s:s + batch].astype(np.float64)
            for j in range(i):  # layers already folded
                h = np.maximum(conv_forward(h, q['conv%d_weight' % j], q['conv%d_bias' % j])[0], 0)
                h = maxpool_forward(h)[0]
            y = conv_forward(h, q['conv%d_weight' % i].astype(np.float64),
                             q['conv%d_bias' % i].astype(np.float64))[0]
            s1 = s1 + y.sum(axis=(0, 2, 3))
            s2 = s2 + (y * y).sum(axis=(0, 2, 3))
            count += y.shape[0] * y.shape[2] * y.shape[3]
        mean = s1 / count
        var = np.maximum(s2 / count - mean * mean, 0)
        scale = p['bn%d_gamma' % i].astype(np.float64) / np.sqrt(var + BN_EPS)
        w = q['conv%d_weight' % i].astype(np.float64) * scale[:, None, None, None]
        b = (q['conv%d_bias' % i] - mean) * scale + p['bn%d_beta' % i]
        q['conv%d_weight' % i] = w.astype(np.float32)
        q['conv%d_bias' % i] = b.astype(np.float32)
    return q


class Adam:
    def __init__(self, params, lr=3e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params, grads):
        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        for k in params:
            g = grads[k].astype(np.float32)
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            params[k] -= (self.lr * (self.m[k] / c1) /
                          (np.sqrt(self.v[k] / c2) + self.eps)).astype(np.float32)


def train(p, x, labels, rng, epochs, batch=32, lr=3e-3, log=print):
    opt = Adam(p, lr=lr)
    n = x.shape[0]
    steps = epochs * ((n + batch - 1) // batch)
    step = 0
    for ep in range(epochs):
        order = rng.permutation(n)
        total = 0.0
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            opt.lr = lr * 0.5 * (1 + np.cos(np.pi * step / steps))  # cosine decay
            loss, g = loss_and_grads(p, x[idx], labels[idx])
            opt.step(p, g)
            total += loss * len(idx)
            step += 1
        log('  epoch %2d  loss %.4f' % (ep + 1, total / n))
    return p


def predict(p, x, batch=256):
    out = []
    for s in range(0, x.shape[0], batch):
        out.append(forward(p, x[s:s + batch]).argmax(axis=1))
    return np.concatenate(out)
