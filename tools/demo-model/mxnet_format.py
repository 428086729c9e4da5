"""MXNet model files (the seed demo's format): writer and checked reader, numpy only.

Params file (NDArray list, little endian), as MXNet 1.x `nd.save` writes it:

    u64 magic 0x112, u64 reserved 0, u64 array_count
    array_count arrays, each (V2):
        u32 magic 0xF993FAC9, i32 storage_type (0 = dense),
        u32 ndim, i64 dims[ndim],
        i32 dev_type (1 = cpu), i32 dev_id (0),
        i32 type_flag (0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8, 6 int64),
        raw element data, C order
    u64 key_count (equal to array_count), then key_count keys: u64 length + bytes
    ("arg:NAME" for weights, "aux:NAME" for auxiliary states such as BatchNorm running stats)

The reader also accepts V3 arrays (magic 0xF993FACA, same dense layout) and pre-V2 arrays
(no array magic: u32 ndim + u32 dims[ndim], then context, type_flag, data). Every count and
length is checked against the bytes left before anything is allocated.

Symbol file: JSON with `nodes` (op, name, attrs, inputs [[node, output, version]]), `arg_nodes`
(indices of the "null" nodes), `node_row_ptr`, `heads` and `attrs.mxnet_version`.
"""

import json
import struct

import numpy as np

NDARRAY_LIST_MAGIC = 0x112
NDARRAY_V2_MAGIC = 0xF993FAC9
NDARRAY_V3_MAGIC = 0xF993FACA
MAX_NDIM = 8
MAX_NAME_BYTES = 4096

TYPE_FLAGS = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32,
              5: np.int8, 6: np.int64}
FLAG_OF_DTYPE = {np.dtype(v): k for k, v in TYPE_FLAGS.items()}

# What real MXNet 1.5 writes as mxnet_version (MXNET_VERSION = major*10000 + minor*100 + patch).
MXNET_VERSION = 10500


class FormatError(ValueError):
    """A params or symbol file that does not follow the format."""


def write_params(path, arrays):
    """Writes `arrays` (an ordered list of (key, numpy array), keys 'arg:..'/'aux:..')."""
    with open(path, 'wb') as f:
        f.write(params_bytes(arrays))


def params_bytes(arrays):
    out = [struct.pack('<QQQ', NDARRAY_LIST_MAGIC, 0, len(arrays))]
    for key, a in arrays:
        if not (key.startswith('arg:') or key.startswith('aux:')):
            raise FormatError('key %r must start with arg: or aux:' % key)
        a = np.ascontiguousarray(a)
        flag = FLAG_OF_DTYPE.get(a.dtype)
        if flag is None:
            raise FormatError('%s: dtype %s has no MXNet type flag' % (key, a.dtype))
        out.append(struct.pack('<IiI', NDARRAY_V2_MAGIC, 0, a.ndim))
        out.append(struct.pack('<%dq' % a.ndim, *a.shape))
        out.append(struct.pack('<iii', 1, 0, flag))
        out.append(a.astype(a.dtype.newbyteorder('<'), copy=False).tobytes())
    out.append(struct.pack('<Q', len(arrays)))
    for key, _ in arrays:
        k = key.encode('utf-8')
        out.append(struct.pack('<Q', len(k)) + k)
    return b''.join(out)


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n, what):
        if n < 0 or n > len(self.data) - self.pos:
            raise FormatError('truncated at byte %d reading %s (%d bytes wanted, %d left)'
                              % (self.pos, what, n, len(self.data) - self.pos))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def _read_array(r, index):
    what = 'array %d' % index
    (first,) = r.unpack('<I', what + ' header')
    if first in (NDARRAY_V2_MAGIC, NDARRAY_V3_MAGIC):
        (stype,) = r.unpack('<i', what + ' storage type')
        if stype != 0:
            raise FormatError('%s: storage type %d is not dense' % (what, stype))
        (ndim,) = r.unpack('<I', what + ' ndim')
        dim_fmt = 'q'
    else:  # pre-V2: the first word is ndim
        ndim, dim_fmt = first, 'I'
    if ndim > MAX_NDIM:
        raise FormatError('%s: ndim %d exceeds %d' % (what, ndim, MAX_NDIM))
    dims = r.unpack('<%d%s' % (ndim, dim_fmt), what + ' dims')
    if any(d < 0 for d in dims):
        raise FormatError('%s: negative dimension in %s' % (what, dims))
    if ndim == 0:
        return np.zeros((0,), np.float32)  # MXNet writes no context/data for an empty array
    r.unpack('<ii', what + ' context')
    (flag,) = r.unpack('<i', what + ' type flag')
    if flag not in TYPE_FLAGS:
        raise FormatError('%s: unknown type flag %d' % (what, flag))
    dtype = np.dtype(TYPE_FLAGS[flag]).newbyteorder('<')
    count = 1
    for d in dims:
        count *= d
    left = len(r.data) - r.pos
    if count * dtype.itemsize > left:
        raise FormatError('%s: %d elements do not fit in the %d bytes left' % (what, count, left))
    raw = r.take(count * dtype.itemsize, what + ' data')
    return np.frombuffer(raw, dtype).reshape(dims).astype(dtype.newbyteorder('='))


def read_params(path):
    """Returns an ordered list of (key, numpy array). Raises FormatError on bad files."""
    with open(path, 'rb') as f:
        return parse_params(f.read())


def parse_params(data):
    r = _Reader(data)
    magic, _reserved, count = r.unpack('<QQQ', 'file header')
    if magic != NDARRAY_LIST_MAGIC:
        raise FormatError('bad list magic 0x%x (want 0x112)' % magic)
    # Every array takes at least 4 bytes: a count beyond that is a lie, not an allocation.
    if count > (len(data) - r.pos) // 4:
        raise FormatError('array count %d too large for a %d-byte file' % (count, len(data)))
    arrays = [_read_array(r, i) for i in range(count)]
    (nkeys,) = r.unpack('<Q', 'key count')
    if nkeys != count:
        raise FormatError('%d keys for %d arrays' % (nkeys, count))
    keys = []
    for i in range(nkeys):
        (n,) = r.unpack('<Q', 'key %d length' % i)
        if n > MAX_NAME_BYTES:
            raise FormatError('key %d length %d exceeds %d' % (i, n, MAX_NAME_BYTES))
        keys.append(r.take(n, 'key %d' % i).decode('utf-8'))
    if r.pos != len(data):
        raise FormatError('%d trailing bytes' % (len(data) - r.pos))
    return list(zip(keys, arrays))


class SymbolBuilder:
    """Builds an MXNet symbol graph in topological order, as `Symbol.tojson()` lays it out."""

    def __init__(self):
        self.nodes = []

    def var(self, name):
        self.nodes.append({'op': 'null', 'name': name, 'inputs': []})
        return len(self.nodes) - 1

    def op(self, op, name, inputs, attrs=None):
        node = {'op': op, 'name': name}
        if attrs:
            node['attrs'] = dict(sorted(attrs.items()))
        node['inputs'] = [[i, 0, 0] for i in inputs]
        self.nodes.append(node)
        return len(self.nodes) - 1

    def to_json(self, head):
        rows = list(range(len(self.nodes) + 1))  # every node here has one output
        sym = {'nodes': self.nodes,
               'arg_nodes': [i for i, n in enumerate(self.nodes) if n['op'] == 'null'],
               'node_row_ptr': rows,
               'heads': [[head, 0, 0]],
               'attrs': {'mxnet_version': ['int', MXNET_VERSION]}}
        return json.dumps(sym, indent=2) + '\n'


def read_symbol(path):
    """Parses a symbol JSON file; returns (nodes, heads). Attributes are normalised to `attrs`."""
    with open(path, 'r', encoding='utf-8') as f:
        sym = json.load(f)
    if not isinstance(sym, dict) or not isinstance(sym.get('nodes'), list):
        raise FormatError('symbol: no "nodes" list')
    nodes = []
    for i, n in enumerate(sym['nodes']):
        attrs = n.get('attrs', n.get('attr', n.get('param', {}))) or {}
        inputs = []
        for e in n.get('inputs', []):
            if not (2 <= len(e) <= 3) or not (0 <= e[0] < i):
                raise FormatError('symbol: node %d (%s) has a bad input %r' % (i, n.get('name'), e))
            inputs.append(e[0])
        nodes.append({'op': n['op'], 'name': n['name'], 'attrs': attrs, 'inputs': inputs})
    heads = [h[0] for h in sym.get('heads', [[len(nodes) - 1, 0, 0]])]
    return nodes, heads


def ints(value):
    """Parses an MXNet tuple attribute such as "(3, 3)" or "(64,)" or "3"."""
    return [int(v) for v in value.strip('()[] ').split(',') if v.strip()]
